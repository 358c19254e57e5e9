"""What encoding against trained shared layers buys: PSNR versus steps for held-out images.

Trains MINR on Kodak kodim05..kodim12, then encodes kodim01..kodim04 (never seen) against its
frozen shared layers with several step budgets, and compares with fitting separate INRs to the
same four images from scratch with the same budgets. Same size, width, lr schedule everywhere.

    python benchmarks/encode.py --out benchmarks/encode.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
from pathlib import Path

import torch

import inrkit

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", type=Path, default=KODAK)
    parser.add_argument("--max-side", type=int, default=128)
    parser.add_argument("--width", type=int, default=40)
    parser.add_argument("--train-steps", type=int, default=600)
    parser.add_argument("--budgets", default="50,100,200,400")
    parser.add_argument("--lrs", default="5e-4,2e-3", help="learning rates tried for every method")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    train = [str(args.kodak / f"kodim{i:02d}.png") for i in range(5, 13)]
    held_out = [str(args.kodak / f"kodim{i:02d}.png") for i in range(1, 5)]
    base = {"signal": {"name": "image", "max_side": args.max_side}, "model": {"width": args.width}}
    work = Path(tempfile.mkdtemp(prefix="inrkit-encode-"))  # the MINR run folder is kept there
    shared_run = inrkit.fit(
        {**base, "sharing": {"name": "minr"}, "train": {"steps": args.train_steps}}, data=train, out=work / "minr"
    )
    print(f"MINR on {len(train)} training images: {shared_run.metrics.psnr_mean:.2f} dB", flush=True)

    rows = []
    lrs = [float(x) for x in args.lrs.split(",")]
    for steps in [int(s) for s in args.budgets.split(",")]:
        row: dict = {"steps": steps}
        for lr in lrs:
            for init in ("random", "mean"):
                row[f"encode {init} lr {lr:g}"] = inrkit.encode(
                    shared_run.run_dir, held_out, save=False, train={"steps": steps, "lr": lr}, init=init
                ).metrics
            row[f"separate lr {lr:g}"] = inrkit.fit(
                {**base, "sharing": {"name": "separate"}, "train": {"steps": steps, "lr": lr}}, data=held_out, save=False
            ).metrics
        rows.append(row)
        print(f"{steps:5d} steps: " + ", ".join(f"{k} {v.psnr_mean:.2f}" for k, v in row.items() if k != "steps"), flush=True)

    methods = [k for k in rows[0] if k != "steps"]
    enc_params = rows[0][methods[0]].params.per_item
    sep_params = rows[0][methods[-1]].params.per_item
    lines = [
        f"MINR trained on kodim05-12 ({args.train_steps} steps, {shared_run.metrics.psnr_mean:.2f} dB on them); "
        f"kodim01-04 held out. Longer side {args.max_side} px, width {args.width}, SIREN, lr decayed to 0.1x "
        f"over each budget; PSNR (dB) mean over the 4 held-out images; {datetime.date.today()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}.",
        "",
        "| steps | " + " | ".join(methods) + " |",
        "| --- | " + " | ".join("---" for _ in methods) + " |",
    ]
    for r in rows:
        lines.append(f"| {r['steps']} | " + " | ".join(f"{r[m].psnr_mean:.2f} ± {r[m].psnr_std:.2f}" for m in methods) + " |")
    lines += ["", f"New parameters per image: {enc_params:,} when encoding into MINR, {sep_params:,} for a separate INR."]
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        args.out.write_text(table + "\n")
        keep = ("psnr_mean", "psnr_std", "seconds", "params")
        slim = [{k: v if k == "steps" else {m: v.to_dict()[m] for m in keep} for k, v in r.items()} for r in rows]
        args.out.with_suffix(".json").write_text(json.dumps(slim, indent=2) + "\n")


if __name__ == "__main__":
    main()
