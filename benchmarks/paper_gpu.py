"""The MINR paper's tables at full scale, a few minutes of card time at a time.

    python benchmarks/paper_gpu.py --data ../shared/data --out paper-gpu/ --budget 540   # on a card
    python benchmarks/paper_gpu.py --smoke --device cpu --out /tmp/pg                   # anywhere

Each *cell* is one fit (an experiment, a method, a seed) run as a user would run it (``inrkit
run`` in a subprocess). The script runs the next unfinished cells, most valuable first, within
``--budget`` seconds: it estimates each cell's time from the step rates measured so far (or, for
a kind never measured, from points × a per-point cost) and refuses to start one that would not
finish. Every finished cell (PSNR and SSIM mean and std over the items, seconds, steps, the card,
the commit, the date) goes into one small JSON (``benchmarks/paper_gpu.json`` by default,
committed; no checkpoints), and ``benchmarks/PAPER.md`` is rendered from it: the paper's figure,
ours, the difference, the seeds behind each cell, and what is still unmeasured. The next window
on a card picks up where the last one stopped.

Order: the recipe study first (the paper gives no steps or learning rate: SIREN at lr 5e-4, 1e-3
and 2e-3, separate and MINR, Kodak-4, 5,000 steps; the recipe is the learning rate with the best
mean PSNR over both methods, the same for every method), then Table I Kodak-4 (separate and MINR
with three seeds, the single-network baselines and COIN++ with one), ImageNet-40, Table III,
Table II, super-resolution, video, ImageNet-100. ``--smoke`` runs the same code paths at tiny
sizes on generated images (a few minutes on a CPU; ``tests/tools/test_paper_gpu.py`` runs it),
writing its JSON and PAPER.md under ``--out`` only.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gpu_speed import last_json  # noqa: E402 - the sibling script's parser (compilers may log before the JSON)
INRKIT = [sys.executable, "-m", "inrkit.cli"]
STEPS = 5000
STUDY_LRS = (5e-4, 1e-3, 2e-3)
#: Seconds per point and step for a kind never measured (MINR at width 256 on an H200: 53 ms a
#: Kodak-4 step eager, 1.57M points), and the fixed cost of one cell (start, load, evaluate, write).
SECONDS_PER_POINT_STEP = {"cuda": 3.5e-8, "cpu": 1.5e-6}
CELL_OVERHEAD = 45.0


@dataclasses.dataclass(frozen=True)
class Cell:
    """One fit of the paper's tables."""

    table: str
    experiment: str  # the data set: kodak4, imagenet40, imagenet100, video50, sr2, sr4
    method: str  # the row label
    args: tuple[str, ...]  # inrkit run options beyond the data and the recipe
    seed: int
    paper: tuple[float, float] | None  # the paper's PSNR mean and std
    lr: float | None = None  # a study cell's own learning rate; None: the recipe's
    backbone: str = "siren"

    @property
    def key(self) -> str:
        lr = "" if self.lr is None else f"-lr{self.lr:g}"
        return f"{self.table}/{self.experiment}/{self.method}{lr}/seed{self.seed}"

    @property
    def rate_key(self) -> str:
        """Cells with the same step cost share a measured rate."""
        return f"{self.experiment}/{self.backbone}/{'separate' if 'separate' in self.args else 'shared'}"


PAPER_T1 = {
    "kodak4": {"separate": (38.24, 0.58), "minr": (36.24, 0.68), "id": (31.54, 0.69), "coinpp": (31.27, 0.82)},
    "imagenet40": {"separate": (38.17, 1.42), "minr": (34.37, 1.29), "id": (29.16, 1.57), "coinpp": (30.42, 1.73)},
    "imagenet100": {"separate": (38.06, 1.58), "minr": (34.02, 1.67)},
    "video50": {"separate": (38.95, 0.24), "minr": (35.93, 1.58)},
}
PAPER_T3 = {
    "w/o projection layers": ((27.15, 0.0), ("sharing.projection=false",)),
    "w/o sharing 2nd layer": ((36.53, 0.0), ("sharing.shared_layers=[3,4]",)),
    "w/o sharing 3rd layer": ((36.49, 0.0), ("sharing.shared_layers=[2,4]",)),
    "w/o sharing 4th layer": ((36.39, 0.0), ("sharing.shared_layers=[2,3]",)),
    "w/o sharing 2nd & 3rd": ((36.67, 0.0), ("sharing.shared_layers=[4]",)),
    "w/o sharing 2nd & 4th": ((36.75, 0.0), ("sharing.shared_layers=[3]",)),
    "w/o sharing 3rd & 4th": ((36.62, 0.0), ("sharing.shared_layers=[2]",)),
}
PAPER_SR = {"sr2": {"separate": (38.87, 0.0), "minr": (36.59, 0.0)}, "sr4": {"separate": (37.25, 0.0), "minr": (35.91, 0.0)}}


def sharing(name: str) -> tuple[str, ...]:
    return ("--sharing", name)


def cells() -> list[Cell]:
    """Every cell, most valuable first."""
    out = [
        Cell("recipe", "kodak4", m, sharing(m), 0, None, lr=lr) for lr in STUDY_LRS for m in ("separate", "minr")
    ]
    for seed in (0, 1, 2):
        out += [Cell("I", "kodak4", m, sharing(m), seed, PAPER_T1["kodak4"][m]) for m in ("separate", "minr")]
    out += [Cell("I", "kodak4", m, sharing(m), 0, PAPER_T1["kodak4"].get(m)) for m in ("id", "row", "column", "grid", "coinpp")]
    out += [Cell("I", "imagenet40", m, sharing(m), 0, PAPER_T1["imagenet40"][m]) for m in ("separate", "minr")]
    out += [Cell("III", "kodak4", label, ("--sharing", "minr", *(a for s in sets for a in ("--set", s))), 0, paper)
            for label, (paper, sets) in PAPER_T3.items()]
    for backbone in ("gauss", "finer", "wire"):
        out += [Cell("II", "kodak4", f"{backbone} {m}", ("--activation", backbone, *sharing(m)), 0, None, backbone=backbone)
                for m in ("separate", "minr")]
    for experiment, rows in PAPER_SR.items():
        out += [Cell("SR", experiment, m, sharing(m), 0, rows[m]) for m in ("separate", "minr")]
    out += [Cell("I", "video50", m, sharing(m), 0, PAPER_T1["video50"][m]) for m in ("separate", "minr")]
    out += [Cell("I", "imagenet100", m, sharing(m), 0, PAPER_T1["imagenet100"][m]) for m in ("separate", "minr")]
    return out


# -- data -----------------------------------------------------------------------------------------
def smoke_data(folder: Path) -> Path:
    """Small generated images and a folder of video frames in the shared data's layout."""
    import imageio.v3 as iio
    import numpy as np

    def image(h: int, w: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        planes = [sum(np.sin(2 * np.pi * (rng.uniform(1, 4) * x + rng.uniform(1, 4) * y) + rng.uniform(0, 6)) for _ in range(3))
                  for _ in range(3)]
        img = np.stack([(p - p.min()) / (p.max() - p.min() + 1e-9) for p in planes], axis=-1)
        return np.round(img * 255).astype(np.uint8)

    for sub in ("kodak", "imagenet100", "video/frames"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(1, 5):
        iio.imwrite(folder / "kodak" / f"kodim{i:02d}.png", image(12, 16, i))
    for i in range(6):
        iio.imwrite(folder / "imagenet100" / f"n{i:08d}.JPEG", image(10, 14, 10 + i), extension=".jpeg")
    for t in range(4):
        iio.imwrite(folder / "video" / "frames" / f"f{t:03d}.png", np.roll(image(10, 12, 99), t, axis=1))
    return folder


def sources(experiment: str, data: Path, smoke: bool) -> list[str]:
    kodak = [str(data / "kodak" / f"kodim{i:02d}.png") for i in range(1, 5)]
    imagenet = sorted(str(p) for p in (data / "imagenet100").glob("*.JPEG"))
    return {
        "kodak4": kodak, "sr2": kodak[:2], "sr4": kodak[:2],
        "imagenet40": imagenet[: 3 if smoke else 40], "imagenet100": imagenet[: 6 if smoke else 100],
        "video50": [str(data / "video" / ("frames" if smoke else "bigbuckbunny.mp4"))],
    }[experiment]


def experiment_args(experiment: str, smoke: bool) -> list[str]:
    return {
        "sr2": ["--signal", "superres", "--set", "signal.scale=2"],
        "sr4": ["--signal", "superres", "--set", "signal.scale=4"],
        "video50": ["--signal", "video", "--set", f"signal.frames={4 if smoke else 50}"],
    }.get(experiment, [])


def points_of(experiment: str, smoke: bool) -> int:
    """Points one step covers (for a first estimate): the paper's sizes."""
    if smoke:
        return 1000
    return {"kodak4": 4 * 393_216, "sr2": 2 * 98_304, "sr4": 2 * 24_576, "imagenet40": 40 * 187_500,
            "imagenet100": 100 * 187_500, "video50": 50 * 921_600}[experiment]


# -- results --------------------------------------------------------------------------------------
def load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"format": "inrkit-paper-gpu", "cells": {}, "rates": {}}
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != "inrkit-paper-gpu":
        raise SystemExit(f"Error: {path} is not a paper_gpu results file")
    return data


def save(path: Path, results: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def recipe_lr(results: dict[str, Any]) -> float | None:
    """The study's learning rate with the best mean PSNR over separate and MINR (None: unfinished)."""
    study = [c for c in cells() if c.table == "recipe"]
    done = results["cells"]
    if not all(c.key in done for c in study):
        return None
    scores = {lr: statistics.fmean(done[c.key]["psnr_mean"] for c in study if c.lr == lr) for lr in STUDY_LRS}
    return max(scores, key=lambda lr: scores[lr])


def estimate(cell: Cell, results: dict[str, Any], device: str, steps: int, smoke: bool) -> float:
    rate = results["rates"].get(cell.rate_key)
    per_step = rate if rate is not None else points_of(cell.experiment, smoke) * SECONDS_PER_POINT_STEP["cuda" if device.startswith("cuda") else "cpu"]
    return CELL_OVERHEAD * (0.1 if smoke else 1.0) + steps * per_step


def run_cell(cell: Cell, lr: float, args: argparse.Namespace, data: Path, steps: int, timeout: float) -> dict[str, Any]:
    out = args.out / "runs" / cell.key.replace("/", "_")
    if out.exists():
        import shutil

        shutil.rmtree(out)  # a cell interrupted in an earlier window: this script's own folder
    lr_args = [] if cell.backbone != "siren" else ["--lr", f"{lr:g}"]
    size = ["--width", "16", "--layers", "5"] if args.smoke else ["--width", "256", "--layers", "5"]
    command = [*INRKIT, "run", *sources(cell.experiment, data, args.smoke), *experiment_args(cell.experiment, args.smoke), *cell.args,
               *size, "--steps", str(steps), "--seed", str(cell.seed), *lr_args, "--device", args.device,
               "--out", str(out), "--json", "--no-progress", "--no-plots"]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        return {"status": "failed", "error": lines[-1][:300] if lines else f"exit {proc.returncode}", "wall_seconds": wall}
    metrics = last_json(proc.stdout)
    items = metrics.get("items") or []
    psnrs = [it["psnr"] for it in items if isinstance(it.get("psnr"), (int, float)) and math.isfinite(it["psnr"])]
    return {
        "status": "done", "psnr_mean": metrics["psnr_mean"], "psnr_std": statistics.pstdev(psnrs) if len(psnrs) > 1 else 0.0,
        "ssim_mean": metrics.get("ssim_mean"), "params": metrics["params"]["total"], "steps": metrics["steps"],
        "lr": lr if cell.backbone == "siren" else metrics.get("lr"), "seconds": metrics["seconds"], "wall_seconds": wall,
        "compiled": metrics.get("compiled"), "step_seconds": metrics["seconds"] / max(1, metrics["steps"]),
    }


# -- PAPER.md -------------------------------------------------------------------------------------
TITLES = {"recipe": "The recipe study (Kodak-4, SIREN, 5,000 steps, seed 0)", "I": "Table I", "III": "Table III (Kodak-4, MINR ablations)",
          "II": "Table II (Kodak-4, other backbones)", "SR": "Super-resolution (Kodak, two images)"}


def render(results: dict[str, Any], smoke: bool, steps: int = STEPS) -> str:
    done = results["cells"]
    lr = recipe_lr(results)
    lines = [
        "# The MINR paper at full scale" + (" (smoke sizes: not results)" if smoke else ""), "",
        "<!-- --8<-- [start:cells] -->",
        "Generated by `python benchmarks/paper_gpu.py` from `benchmarks/paper_gpu.json`; do not edit by hand.",
        "Each row: the paper's PSNR (mean ± std over its images), ours (the mean over seeds of each fit's mean",
        "over images; ± the std over images of one fit, or the t-interval over seeds where there are several),",
        "the difference, the seeds behind it, and the card. Width 256, 5 layers (the paper's), "
        f"{steps:,} full-image steps, " + (f"learning rate {lr:g} (the recipe study's best)." if lr else "learning rate: the recipe study is unfinished."),
        "The CPU miniatures of every table are in `benchmarks/RESULTS.md`; `docs/reproducing.md` shows both.",
        "",
    ]
    measured = sum(1 for c in cells() if c.key in done)
    lines += [f"{measured} of {len(cells())} cells measured.", ""]
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells():
        groups.setdefault((c.table, c.experiment), []).append(c)
    for (table, experiment), members in groups.items():
        lines += [f"## {TITLES.get(table, table)}: {experiment}" + ("" if table != "recipe" else ""), "",
                  "| method | paper (dB) | ours (dB) | difference | seeds | SSIM | params | card |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        rows: dict[str, list[Cell]] = {}
        for c in members:
            rows.setdefault(c.method + ("" if c.lr is None else f", lr {c.lr:g}"), []).append(c)
        for label, group in rows.items():
            found = [done[c.key] for c in group if c.key in done]
            paper = group[0].paper
            paper_text = "–" if paper is None else (f"{paper[0]:.2f} ± {paper[1]:.2f}" if paper[1] else f"{paper[0]:.2f}")
            if not found:
                lines.append(f"| {label} | {paper_text} | unmeasured | – | 0 of {len(group)} | – | – | – |")
                continue
            mean = statistics.fmean(f["psnr_mean"] for f in found)
            if len(found) > 1:
                spread = statistics.stdev(f["psnr_mean"] for f in found) * t95(len(found) - 1) / math.sqrt(len(found))
                ours = f"{mean:.2f} ± {spread:.2f} (95% CI over seeds)"
            else:
                ours = f"{mean:.2f} ± {found[0]['psnr_std']:.2f}"
            diff = "–" if paper is None else f"{mean - paper[0]:+.2f}"
            ssim = statistics.fmean(f["ssim_mean"] for f in found if f.get("ssim_mean") is not None) if any(f.get("ssim_mean") is not None for f in found) else None
            cards = sorted({f.get("card", "?") for f in found})
            lines.append(f"| {label} | {paper_text} | {ours} | {diff} | {len(found)} of {len(group)} | "
                         f"{'–' if ssim is None else f'{ssim:.3f}'} | {found[0]['params']:,} | {', '.join(cards)} |")
        lines.append("")
    lines.append("<!-- --8<-- [end:cells] -->")
    return "\n".join(lines) + "\n"


def t95(df: int) -> float:
    """Student's t for a two-sided 95% interval (small tables; scipy is not needed for this)."""
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
    return table.get(df, 1.96 + 2.5 / max(df, 1))


def card_name(device: str) -> str:
    code = "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    name = proc.stdout.strip() or "unknown"
    return name if device.startswith("cuda") else "CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a folder for the cells' run folders")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds of this window; a cell that would not finish is not started")
    parser.add_argument("--results", type=Path, help="the results JSON [default: benchmarks/paper_gpu.json; --out/paper_gpu.json with --smoke]")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on generated images: the same code paths")
    parser.add_argument("--only", help="comma-separated tables to run (recipe, I, II, III, SR)")
    parser.add_argument("--render-only", action="store_true", help="rewrite PAPER.md from the results; run nothing")
    parser.add_argument("--paper", type=Path, help="where PAPER.md goes [default: benchmarks/PAPER.md; --out/PAPER.md with --smoke]")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.results or (args.out / "paper_gpu.json" if args.smoke else HERE / "paper_gpu.json")
    paper_md = args.paper or (args.out / "PAPER.md" if args.smoke else HERE / "PAPER.md")
    results = load(results_path)
    if args.render_only:
        paper_md.write_text(render(results, args.smoke, 3 if args.smoke else STEPS))
        print(f"wrote {paper_md}")
        return 0
    data = smoke_data(args.out / "smoke-data") if args.smoke else args.data
    steps = 3 if args.smoke else STEPS
    card = card_name(args.device)
    if args.device.startswith("cuda") and card in ("CPU", "unknown"):
        print("Error: --device cuda but torch sees no CUDA device here (use --device cpu --smoke)", file=sys.stderr)
        return 2
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip() or "unknown"
    started = time.perf_counter()
    tables = set(args.only.split(",")) if args.only else None
    failures = 0
    for cell in cells():
        if cell.key in results["cells"] or (tables is not None and cell.table not in tables):
            continue
        lr = cell.lr if cell.lr is not None else recipe_lr(results)
        if lr is None:
            print(f"waiting: {cell.key} needs the recipe study first")
            continue
        left = args.budget - (time.perf_counter() - started)
        needed = estimate(cell, results, args.device, steps, args.smoke)
        if needed > left:
            print(f"not started: {cell.key} needs about {needed:.0f} s, {left:.0f} s are left")
            continue
        print(f"running {cell.key} (about {needed:.0f} s)", flush=True)
        found = run_cell(cell, lr, args, data, steps, timeout=max(60.0, 2 * needed))
        if found["status"] != "done":
            print(f"  failed: {found['error']}")
            failures += 1
            continue
        found.update(card=card, commit=commit, date=datetime.date.today().isoformat(), device=args.device)
        results["cells"][cell.key] = found
        results["rates"][cell.rate_key] = found["step_seconds"]
        save(results_path, results)
        print(f"  {found['psnr_mean']:.2f} dB in {found['seconds']:.0f} s")
    save(results_path, results)
    paper_md.write_text(render(results, args.smoke, steps))
    print(f"wrote {results_path} and {paper_md}" + (f"; {failures} cell(s) failed" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
