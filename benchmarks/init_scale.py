"""Time to quality with the weight-scaling initialisation (``activation.init_scale``).

For each sharing strategy, ``inrkit compare`` fits the same images once per initialisation scale
and seed (scale 1 is SIREN's own initialisation, the reference of the paired column). From each
run's training history (``train.log_every`` steps apart) it reads the first step whose training
PSNR reaches the reference's PSNR after all its steps on the same seed: "steps to today's
quality". The table gives, per strategy and scale, the final PSNR (mean over seeds ± std), its
paired difference to scale 1 with a 95% t-interval over seeds, the PSNR after a third of the
steps, and the steps and seconds to reach the reference's final PSNR (median over seeds).

    python benchmarks/init_scale.py --images 8 --max-side 128 --width 128 --seeds 0,1,2 --out benchmarks/init_scale.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

from inrkit.experiments.compare import Variant, compare

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def steps_to_reach(history: list[dict], target: float) -> int | None:
    """The first logged step whose training PSNR is at least ``target`` (``None``: never)."""
    return next((h["step"] for h in history if h["psnr"] >= target), None)


def psnr_at(history: list[dict], step: int) -> float | None:
    """The training PSNR of the last logged step at or before ``step``."""
    before = [h for h in history if h["step"] <= step]
    return before[-1]["psnr"] if before else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", type=Path, default=KODAK)
    parser.add_argument("--images", type=int, default=8, help="kodim01..kodimNN")
    parser.add_argument("--max-side", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--activation", default="siren")
    parser.add_argument("--sharing", default="separate,minr")
    parser.add_argument("--scales", default="1,1.5,2,2.5", help="init_scale values; the first is the reference")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--work", type=Path, help="folder for the compare runs (kept; resumable) [default: a temporary one]")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    data = [str(args.kodak / f"kodim{i:02d}.png") for i in range(1, args.images + 1)]
    scales = [float(s) for s in args.scales.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="inrkit-init-scale-"))
    lines = [
        f"`python benchmarks/init_scale.py --images {args.images} --max-side {args.max_side} --width {args.width} "
        f"--steps {args.steps} --activation {args.activation} --sharing {args.sharing} --scales {args.scales} "
        f"--seeds {args.seeds}` — {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{__import__('torch').__version__}, {datetime.date.today()}; {len(data)} Kodak images (kodim01–kodim{args.images:02d}) "
        f"at {args.max_side} px on the longer side, width {args.width}, {args.steps} steps, {len(seeds)} seeds.",
        "",
        "| strategy | init_scale | PSNR (dB), mean ± std over seeds | vs scale {:g} (dB, paired, 95% CI) | training PSNR at step {} | "
        "steps to scale {:g}'s final PSNR (median; per seed) | seconds to it (median) |".format(scales[0], args.steps // 3, scales[0]),
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    raw: dict = {}
    for strategy in args.sharing.split(","):
        base = {
            "data": data, "activation": {"name": args.activation}, "sharing": {"name": strategy},
            "signal": {"name": "image", "max_side": args.max_side}, "model": {"width": args.width},
            "train": {"steps": args.steps, "log_every": max(1, args.steps // 100), "compile": False},
        }
        variants = [Variant(f"s{s:g}", (f"activation.init_scale={s}",)) for s in scales]
        rows = compare(base, variants, work / strategy, seeds=seeds, reference=variants[0].name)
        histories = {}
        for row in rows:
            for run in row["runs"]:
                metrics = json.loads((work / strategy / run["run_dir"] / "metrics.json").read_text())
                histories[(row["method"], run["seed"])] = (metrics["history"], metrics["seconds"], metrics["steps"])
        reference = variants[0].name
        for row, scale in zip(rows, scales, strict=True):
            reached, seconds, early = [], [], []
            for seed in seeds:
                history, secs, steps = histories[(row["method"], seed)]
                target = histories[(reference, seed)][0][-1]["psnr"]
                step = steps_to_reach(history, target)
                reached.append(step)
                if step is not None:
                    seconds.append(secs * step / steps)
                early.append(psnr_at(history, args.steps // 3))
            paired = row.get("vs_reference")
            versus = "(reference)" if paired is None and row["method"] == reference else (
                "n/a" if paired is None else f"{paired['mean']:+.2f} ± {paired['half_width']:.2f}" if paired.get("half_width") is not None
                else f"{paired['mean']:+.2f}")
            found = [s for s in reached if s is not None]
            median_steps = f"{statistics.median(found):.0f}" if len(found) == len(reached) else "not on every seed"
            per_seed = ", ".join("never" if s is None else str(s) for s in reached)
            known = [e for e in early if e is not None]
            spread = f" ± {row['psnr_std']:.2f}" if row.get("psnr_std") is not None else ""
            lines.append(
                f"| {strategy} | {scale:g} | {row['psnr_mean']:.2f}{spread} | {versus} | "
                f"{statistics.fmean(known) if known else float('nan'):.2f} | {median_steps} ({per_seed}) | "
                + (f"{statistics.median(seconds):.1f} |" if len(seconds) == len(reached) else "– |")
            )
            raw[f"{strategy} {scale:g}"] = {"rows": row, "steps_to_reference": reached}
        print("\n".join(lines[-len(rows):]), flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(raw, indent=2, default=str))


if __name__ == "__main__":
    main()
