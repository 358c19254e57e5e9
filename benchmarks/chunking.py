"""How the point chunk size changes the CPU training step (the trainer's ``chunk_points``).

Times full-image training steps (forward + backward + Adam) of N items of S x S pixels at width W
for several chunk sizes, including full batch, in one process, and prints a markdown table with
each time as a ratio to the full-batch step. Compare ratios only: machines here are shared.

    python benchmarks/chunking.py --items 1 --size 128
    python benchmarks/chunking.py --items 4 --size 128 --sharing minr
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

import inrkit
from inrkit.training.points import CPU_CHUNK_ROWS, PointSet


def step_seconds(model: inrkit.INRModel, points: PointSet, chunk: int, repeats: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for r in range(repeats + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        for sl, items in points.chunks(chunk):
            coords = points.chunk_coords(sl, items)
            points.loss(model(coords, items), sl, items).backward()
        optimizer.step()
        if r:  # the first step warms up allocators and caches
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--sharing", default="separate")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunks", default="512,1024,2048,4096,8192,16384,full")
    args = parser.parse_args()

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    arrays = [rng.random((args.size, args.size, 3), dtype=np.float32) for _ in range(args.items)]
    points = PointSet.from_arrays(arrays)
    model = inrkit.create_model(
        sharing=args.sharing, item_shapes=[a.shape[:-1] for a in arrays], width=args.width, layers=args.layers
    )

    rows = []
    for label in args.chunks.split(","):
        rows_per_chunk = args.items * args.size * args.size if label == "full" else int(label)
        chunk = max(1, rows_per_chunk // args.items)
        rows.append((label, rows_per_chunk, step_seconds(model, points, chunk, args.repeats)))
    full = next(t for label, _, t in rows if label == "full")
    print(
        f"{args.items} x {args.size}x{args.size}, {args.sharing}, width {args.width}, {args.layers} layers; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
        f"trainer default: {CPU_CHUNK_ROWS} rows per chunk"
    )
    print("\n| rows per chunk | step (ms) | vs full batch |\n| --- | --- | --- |")
    for label, n_rows, seconds in rows:
        print(f"| {label if label == 'full' else n_rows} | {seconds * 1e3:.0f} | {seconds / full:.2f}x |")


if __name__ == "__main__":
    main()
