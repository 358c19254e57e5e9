"""Table II of the MINR paper in miniature: separate INRs vs MINR for every backbone.

Fits each activation with ``separate`` and ``minr`` on the same images and budget and prints a
markdown table (params, PSNR mean ± std, SSIM mean ± std, seconds, and the PSNR of the untrained
network as a reference point). Defaults: Kodak kodim01-04 from ../shared/data, downscaled so the
longer side is 192 px, width 64 (about the paper's parameters per pixel at this size).

    python benchmarks/table2.py --steps 1000 --out benchmarks/table2.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path

import torch

import inrkit

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=[str(KODAK / f"kodim0{i}.png") for i in range(1, 5)])
    parser.add_argument("--max-side", type=int, default=192)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--activations", default=",".join(inrkit.plugins.get_registry().names("activation")))
    parser.add_argument("--sharing", default="separate,minr")
    parser.add_argument("--out", type=Path, help="also write the table (and a .json beside it) here")
    args = parser.parse_args()

    rows = []
    for activation in args.activations.split(","):
        for sharing in args.sharing.split(","):
            config = {
                "activation": {"name": activation},
                "sharing": {"name": sharing},
                "signal": {"name": "image", "max_side": args.max_side},
                "model": {"width": args.width, "layers": args.layers},
                "train": {"steps": args.steps},
            }
            try:
                m = inrkit.fit(config, data=args.data, save=False).metrics
            except inrkit.errors.InrkitError as exc:
                rows.append({"activation": activation, "sharing": sharing, "error": str(exc)})
                print(f"{activation:6} {sharing:8} failed: {exc}", flush=True)
                continue
            row = {
                "activation": activation,
                "sharing": sharing,
                "params": m.params.total,
                "psnr_mean": m.psnr_mean,
                "psnr_std": m.psnr_std,
                "ssim_mean": m.ssim_mean,
                "ssim_std": m.ssim_std,
                "seconds": m.seconds,
                "lr": m.lr,
                "untrained_psnr": m.history[0].psnr,
            }
            rows.append(row)
            print(f"{activation:6} {sharing:8} {row['psnr_mean']:.2f} dB  {row['seconds']:.0f} s", flush=True)

    header = (
        f"{len(args.data)} images, longer side {args.max_side} px, width {args.width}, {args.layers} layers, "
        f"{args.steps} steps, each backbone's default lr; {datetime.date.today()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.machine()}"
    )
    lines = [
        header,
        "",
        "| backbone | method | params | PSNR (dB) | SSIM | seconds | lr | untrained PSNR |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['activation']} | {r['sharing']} | – | failed: {r['error']} | | | | |")
            continue
        lines.append(
            f"| {r['activation']} | {r['sharing']} | {r['params']:,} | {r['psnr_mean']:.2f} ± {r['psnr_std']:.2f} | "
            f"{r['ssim_mean']:.3f} ± {r['ssim_std']:.3f} | {r['seconds']:.0f} | {r['lr']:g} | {r['untrained_psnr']:.2f} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        args.out.write_text(table + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
