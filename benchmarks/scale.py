"""Scale past the paper: thousands of 32x32 crops in one MINR fit, item mini-batches, memory.

    python benchmarks/scale.py crops --data ../shared/data --out /tmp/scale   # make the crops
    python benchmarks/scale.py linear --out /tmp/scale --n 1000 3000 10000    # time and memory vs N
    python benchmarks/scale.py tradeoff --out /tmp/scale --n 1000 --k 64 256 all --epochs 30
    python benchmarks/scale.py npy --out /tmp/scale --n 10000 30000 100000 --k 1024 --epochs 1

**Crops** (a fixed, documented tiling): the Kodak photos (``kodak/*.png``) then the ImageNet
samples (``imagenet100/*``), each in sorted file order, are cut into non-overlapping 32x32 tiles
in row-major order (right and bottom remainders dropped); the first N tiles are the N-crop set,
written as PNGs ``crop00000.png``, ... so that ``inrkit run --data`` loads them like any images.

**linear**: for each N, ``inrkit run`` of MINR width 64 with ``train.items_per_step=K`` for two
epochs in a child process: seconds per epoch (training time / epochs) and the child's peak
resident memory (``wait4``'s ``ru_maxrss``) against ``inrkit params --memory`` for the same run.

**tradeoff**: for one N, each K trained for the same number of epochs: final PSNR, wall time,
and the time at which the training PSNR (a running mean over one epoch of steps) first reaches
the full batch's final training PSNR.

**npy**: the first N tiles as one ``(N, 32, 32, 3)`` uint8 ``.npy`` (past the tiling's end the
tiles again, flipped and transposed: the eight symmetries of the square, in a fixed order), then
for each N: the load alone in a child process (seconds and peak RSS of the image signal reading
the array), and ``inrkit run --data crops-N.npy`` as in **linear** (seconds per epoch, peak RSS
against ``params --memory``). For contrast, the load of the same tiles as PNG files for the
smallest N.

Prints markdown tables and writes ``scale-linear.json`` / ``scale-tradeoff.json`` /
``scale-npy.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

INRKIT = [sys.executable, "-m", "inrkit.cli"]
SIDE = 32


def tiles(data: Path) -> list[Path]:
    sources = sorted((data / "kodak").glob("*.png")) + sorted(p for p in (data / "imagenet100").iterdir() if p.is_file())
    if not sources:
        raise SystemExit(f"no images under {data}/kodak or {data}/imagenet100")
    return sources


def make_crops(data: Path, out: Path, n: int) -> Path:
    """The first ``n`` 32x32 tiles of the fixed tiling as PNGs in ``out/crops-<n>`` (made once)."""
    from PIL import Image

    folder = out / f"crops-{n}"
    if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    made = 0
    for source in tiles(data):
        image = np.asarray(Image.open(source).convert("RGB"))
        for top in range(0, image.shape[0] - SIDE + 1, SIDE):
            for left in range(0, image.shape[1] - SIDE + 1, SIDE):
                Image.fromarray(image[top : top + SIDE, left : left + SIDE]).save(folder / f"crop{made:05d}.png")
                made += 1
                if made == n:
                    return folder
    raise SystemExit(f"the tiling gives only {made} crops, fewer than {n}")


def make_array(data: Path, out: Path, n: int) -> Path:
    """The first ``n`` tiles of the fixed tiling as one ``(n, 32, 32, 3)`` uint8 ``.npy`` (made once);
    past the tiling's end, the tiles again under each of the square's other seven symmetries."""
    from PIL import Image

    path = out / f"crops-{n}.npy"
    if path.is_file():
        return path
    base = []
    for source in tiles(data):
        image = np.asarray(Image.open(source).convert("RGB"))
        for top in range(0, image.shape[0] - SIDE + 1, SIDE):
            for left in range(0, image.shape[1] - SIDE + 1, SIDE):
                base.append(image[top : top + SIDE, left : left + SIDE])
    tiles_ = np.stack(base)
    variants = [tiles_, tiles_[:, ::-1], tiles_[:, :, ::-1], tiles_[:, ::-1, ::-1]]
    variants += [v.transpose(0, 2, 1, 3) for v in variants]
    array = np.concatenate(variants)[:n]
    if len(array) < n:
        raise SystemExit(f"the tiling and its symmetries give only {len(array)} tiles, fewer than {n}")
    np.save(path, np.ascontiguousarray(array))
    return path


LOAD = "import sys, time; from inrkit.plugins import get_registry; signal = get_registry().get('signal', 'image')({}); " \
       "t = time.perf_counter(); items = signal.load(sys.argv[1:]); print(time.perf_counter() - t, len(items))"


def load_only(sources: list[str]) -> dict:
    """The image signal loading ``sources`` in a child process: seconds (the load alone) and peak RSS."""
    with tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.Popen([sys.executable, "-c", LOAD, *sources], stdout=stdout, stderr=subprocess.DEVNULL, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"loading {sources[:1]} failed")
        stdout.seek(0)
        seconds, count = stdout.read().split()
    return {"seconds": float(seconds), "items": int(count), "peak_rss": usage.ru_maxrss * 1024}


def made_in_child(what: str, data: Path, out: Path, n: int) -> Path:
    """``crops`` / ``array`` made by a child process: this one stays small, since a child's peak
    RSS (``ru_maxrss``) counts the memory of the process that started it until its ``exec``."""
    done = subprocess.run([sys.executable, __file__, what, "--data", str(data), "--out", str(out), "--n", str(n)],
                          capture_output=True, text=True, check=True)
    return Path(done.stdout.strip().splitlines()[-1])


def npy(args: argparse.Namespace) -> None:
    rows = []
    folder = made_in_child("crops", args.data, args.out, min(args.n))
    png = load_only([str(folder)])
    print(f"{min(args.n):,} PNG crops: loaded in {png['seconds']:.1f} s, peak {png['peak_rss'] / 2**20:.0f} MiB", flush=True)
    for n in args.n:
        path = made_in_child("array", args.data, args.out, n)
        loaded = load_only([str(path)])
        k = args.k[0]
        steps = steps_for(n, k, args.epochs)
        run = fit(path, args.out / f"npy-{n}-{k}", k, steps, args.extra, recon=not args.no_recon)
        m = run["metrics"]
        rows.append({"n": n, "k": k, "steps": steps, "epochs": args.epochs, "load_seconds": loaded["seconds"],
                     "load_peak_rss": loaded["peak_rss"], "file_bytes": path.stat().st_size,
                     "seconds_per_epoch": m["seconds"] / args.epochs, "wall": run["wall"], "peak_rss": run["peak_rss"],
                     "after_training": m["total_seconds"] - m["seconds"],
                     "estimate": estimate(path, k, args.extra), "psnr": m["psnr_mean"]})
        r = rows[-1]
        print(f"N={n}: load {r['load_seconds']:.1f} s ({r['load_peak_rss'] / 2**20:.0f} MiB), {r['seconds_per_epoch']:.1f} s/epoch, "
              f"{r['after_training']:.1f} s after training, peak {r['peak_rss'] / 2**20:.0f} MiB, "
              f"estimate {r['estimate'] / 2**20:.0f} MiB", flush=True)
    (args.out / "scale-npy.json").write_text(json.dumps({"png_load": png, "rows": rows}, indent=1) + "\n")
    print(f"\n{min(args.n):,} crops as PNG files: load {png['seconds']:.1f} s, peak {png['peak_rss'] / 2**20:.0f} MiB\n")
    print(f"| N | .npy size | load | load peak RSS | K | s / epoch | after training | run peak RSS | estimate | estimate / peak "
          f"| PSNR after {args.epochs} epoch(s) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['n']:,} | {r['file_bytes'] / 2**20:.0f} MiB | {r['load_seconds']:.1f} s | {r['load_peak_rss'] / 2**20:.0f} MiB | "
              f"{r['k']} | {r['seconds_per_epoch']:.1f} | {r['after_training']:.1f} s | {r['peak_rss'] / 2**20:,.0f} MiB | {r['estimate'] / 2**20:,.0f} MiB | "
              f"{r['estimate'] / r['peak_rss']:.2f} | {r['psnr']:.2f} |")


def settings(folder: Path, k: str, extra: list[str]) -> list[str]:
    """The options ``run`` and ``params --memory`` share: the crops, MINR at width 64, K, ``extra``."""
    batch = [] if k == "all" else ["--set", f"train.items_per_step={k}"]
    return ["--data", str(folder), "--sharing", "minr", "--width", "64", *batch, *extra]


def fit(folder: Path, out: Path, k: str, steps: int, extra: list[str], recon: bool = True) -> dict:
    """``inrkit run`` in a child process; its metrics plus the child's peak RSS and wall time."""
    args = [*INRKIT, "run", *settings(folder, k, extra), "--steps", str(steps), "--no-progress", "--no-plots", "--json",
            "--out", str(out), *([] if recon else ["--no-recon"])]
    shutil.rmtree(out, ignore_errors=True)  # this benchmark's own folder from an earlier run
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(args, stdout=stdout, stderr=stderr, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # reaps the child: its own peak RSS, in KiB
        wall = time.perf_counter() - started
        stdout.seek(0), stderr.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"inrkit run failed: {stderr.read()[-2000:]}")
        metrics = json.loads(stdout.read())
    return {"metrics": metrics, "peak_rss": usage.ru_maxrss * 1024, "wall": wall}


def estimate(folder: Path, k: str, extra: list[str]) -> int:
    args = [*INRKIT, "params", *settings(folder, k, extra), "--memory", "--json"]
    return int(json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)["memory_bytes"])


def steps_for(n: int, k: str, epochs: int) -> int:
    return epochs * (1 if k == "all" else math.ceil(n / int(k)))


def linear(args: argparse.Namespace) -> None:
    rows = []
    for n in args.n:
        folder = make_crops(args.data, args.out, n)
        for k in args.k:
            steps = steps_for(n, k, args.epochs)
            run = fit(folder, args.out / f"linear-{n}-{k}", k, steps, args.extra)
            m = run["metrics"]
            rows.append({"n": n, "k": k, "steps": steps, "epochs": args.epochs, "seconds_per_epoch": m["seconds"] / args.epochs,
                         "wall": run["wall"], "peak_rss": run["peak_rss"], "estimate": estimate(folder, k, args.extra),
                         "psnr": m["psnr_mean"]})
            r = rows[-1]
            print(f"N={n} K={k}: {r['seconds_per_epoch']:.1f} s/epoch, peak {r['peak_rss'] / 2**20:.0f} MiB, "
                  f"estimate {r['estimate'] / 2**20:.0f} MiB ({r['estimate'] / r['peak_rss']:.2f}x)", flush=True)
    (args.out / "scale-linear.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n| N | K | s / epoch | peak RSS | estimate | estimate / peak | PSNR after "
          f"{args.epochs} epochs |\n| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['n']:,} | {r['k']} | {r['seconds_per_epoch']:.1f} | {r['peak_rss'] / 2**20:.0f} MiB | "
              f"{r['estimate'] / 2**20:.0f} MiB | {r['estimate'] / r['peak_rss']:.2f} | {r['psnr']:.2f} |")


def tradeoff(args: argparse.Namespace) -> None:
    n = args.n[0]
    folder = make_crops(args.data, args.out, n)
    rows = []
    for k in args.k:
        steps = steps_for(n, k, args.epochs)
        run = fit(folder, args.out / f"tradeoff-{n}-{k}", k, steps, [*args.extra, "--set", "train.log_every=1"])
        m = run["metrics"]
        per_step = m["seconds"] / steps
        window = 1 if k == "all" else math.ceil(n / int(k))  # one epoch of steps
        psnr = np.array([h["psnr"] for h in m["history"]])
        smooth = np.convolve(psnr, np.ones(window) / window, mode="valid")
        rows.append({"n": n, "k": k, "steps": steps, "seconds": m["seconds"], "seconds_per_step": per_step,
                     "psnr": m["psnr_mean"], "train_psnr_curve": smooth.tolist(), "window": window})
        print(f"K={k}: {m['psnr_mean']:.2f} dB after {args.epochs} epochs ({steps} steps) in {m['seconds']:.0f} s", flush=True)
    full = next((r for r in rows if r["k"] == "all"), None)
    for r in rows:
        r["seconds_to_full_batch_psnr"] = None
        if full is not None:
            target = full["train_psnr_curve"][-1]
            reached = np.nonzero(np.asarray(r["train_psnr_curve"]) >= target)[0]
            if reached.size:
                r["seconds_to_full_batch_psnr"] = (int(reached[0]) + r["window"]) * r["seconds_per_step"]
    (args.out / "scale-tradeoff.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\n| K | steps | PSNR after {args.epochs} epochs | training time | time to the full batch's training PSNR |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        reach = r["seconds_to_full_batch_psnr"]
        print(f"| {r['k']} | {r['steps']} | {r['psnr']:.2f} | {r['seconds']:.0f} s | "
              f"{'not reached' if reach is None else f'{reach:.0f} s'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["crops", "array", "linear", "tradeoff", "npy"])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument("--k", nargs="+", default=["256"], help="items per step, or 'all'")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--no-recon", action="store_true", help="npy: runs write no recon/ (inrkit run --no-recon)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further inrkit run options")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what in ("crops", "array"):
        for n in args.n:
            print((make_crops if args.what == "crops" else make_array)(args.data, args.out, n))
    else:
        {"linear": linear, "tradeoff": tradeoff, "npy": npy}[args.what](args)


if __name__ == "__main__":
    main()
