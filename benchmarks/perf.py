"""Issue 6's performance tables in one command: speed ratios and the items-vs-time/memory curve.

Runs ``inrkit bench --json`` in a fresh process per measurement (so each peak memory is its own)
and prints markdown tables:

1. separate and minr at 4 x 128x128, width 256, 5 layers, eager and ``--compile``: step time,
   ratio to the naive per-image loop and to the roofline floor, peak memory;
2. minr at 4, 16, 64 and 100 items of 128x128: step time and peak memory per item count, each
   also per item, so linear growth shows as a flat column.

    python benchmarks/perf.py                      # everything (about 10 minutes on 2 CPU cores)
    python benchmarks/perf.py --skip-scale         # only the ratios
    python benchmarks/perf.py --device cuda --items 4 16 64 100 400

Compare ratios within one run only: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
from typing import Any


def bench(*args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "inrkit", "bench", "--json", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[2:])} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def ratio_table(device: str, size: int, repeats: int) -> str:
    rows = [
        "| sharing | mode | inrkit step (ms) | naive step (ms) | speed-up vs naive | floor (ms) | step / floor | compile (s) | peak memory (MiB) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for sharing in ("separate", "minr"):
        for mode, extra in (("eager", []), ("compiled", ["--compile"])):
            r = bench("--items", "4", "--size", str(size), "--sharing", sharing, "--device", device, "--repeats", str(repeats), *extra)
            compile_s = f"{r['compile_seconds']:.1f}" if r["compile_seconds"] else "-"
            rows.append(
                f"| {sharing} | {mode} | {r['step_seconds'] * 1e3:.1f} | {r['naive_step_seconds'] * 1e3:.1f} | "
                f"{r['ratio_vs_naive']:.2f}x | {r['floor_step_seconds'] * 1e3:.1f} | {r['ratio_vs_floor']:.2f}x | "
                f"{compile_s} | {r['peak_memory_bytes'] / 2**20:.0f} |"
            )
            print(f"  {sharing} {mode}: {r['step_seconds'] * 1e3:.1f} ms", file=sys.stderr, flush=True)
    return "\n".join(rows)


def scale_table(device: str, size: int, counts: list[int], repeats: int, compile_: bool) -> str:
    rows = [
        "| items | step (s) | step per item (ms) | step / floor | peak memory (MiB) | memory per item (MiB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    results = []
    for n in counts:
        extra = ["--compile"] if compile_ else []
        r = bench("--items", str(n), "--size", str(size), "--sharing", "minr", "--device", device, "--no-naive", "--repeats", str(repeats), *extra)
        results.append(r)
        print(f"  {n} items: {r['step_seconds']:.2f} s", file=sys.stderr, flush=True)
    base = results[0]["peak_memory_bytes"]
    for n, r in zip(counts, results, strict=True):
        # Memory per item: growth over the smallest count, so the process's fixed cost drops out.
        per_item = (r["peak_memory_bytes"] - base) / (n - counts[0]) / 2**20 if n != counts[0] else float("nan")
        rows.append(
            f"| {n} | {r['step_seconds']:.2f} | {r['step_seconds'] / n * 1e3:.1f} | {r['ratio_vs_floor']:.2f}x | "
            f"{r['peak_memory_bytes'] / 2**20:.0f} | {'-' if n == counts[0] else f'{per_item:.2f}'} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--items", type=int, nargs="+", default=[4, 16, 64, 100], help="item counts of the curve")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scale-repeats", type=int, default=3)
    parser.add_argument("--scale-compile", action="store_true", help="compile for the curve too")
    parser.add_argument("--skip-ratios", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()

    import torch

    print(f"<!-- {datetime.date.today()} · {platform.machine()} · {torch.get_num_threads()} threads · torch {torch.__version__} -->")
    if not args.skip_ratios:
        print(f"\n4 items of {args.size}x{args.size}, width 256, 5 layers, on {args.device}:\n")
        print(ratio_table(args.device, args.size, args.repeats))
    if not args.skip_scale:
        mode = "compiled" if args.scale_compile else "eager"
        print(f"\nminr ({mode}), {args.size}x{args.size} items, width 256, 5 layers, on {args.device}:\n")
        print(scale_table(args.device, args.size, args.items, args.scale_repeats, args.scale_compile))


if __name__ == "__main__":
    main()
