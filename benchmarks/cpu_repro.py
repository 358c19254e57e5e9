"""Identical CPU reruns: how many of N identical ``inrkit run`` processes end on the same PSNR.

Each process is a fresh ``inrkit run`` of the same generated images, seed and config, with
``MKL_CBWR`` set to each value given (``AUTO,STRICT`` is what ``import inrkit`` sets when the
variable is unset; ``AUTO`` keeps MKL's per-process choice of alignment-dependent code paths,
as before). The table counts the distinct final PSNRs (to the last bit) among the runs.

    python benchmarks/cpu_repro.py --runs 12 --cbwr AUTO AUTO,STRICT
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np


def one_run(data: Path, out: Path, cbwr: str, args: argparse.Namespace) -> float:
    command = [sys.executable, "-m", "inrkit", "run", "--data", str(data), "--out", str(out), "--no-progress",
               "--width", str(args.width), "--steps", str(args.steps), "--set", "train.device=cpu"]
    subprocess.run(command, check=True, capture_output=True, env=os.environ | {"MKL_CBWR": cbwr})
    return json.loads((out / "metrics.json").read_text())["psnr_mean"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--cbwr", nargs="+", default=["AUTO", "AUTO,STRICT"])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(f"# {datetime.date.today()}, {platform.node()}, {platform.processor() or platform.machine()}, "
          f"{args.runs} runs per value, {args.size} px, width {args.width}, {args.steps} steps\n")
    print("| MKL_CBWR | runs | distinct PSNRs | most common PSNR (runs) |\n| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "data")
        data.mkdir()
        rng = np.random.default_rng(0)
        for i in range(2):
            iio.imwrite(data / f"img{i}.png", (rng.random((args.size, args.size, 3)) * 255).astype(np.uint8))
        for cbwr in args.cbwr:
            psnrs = [one_run(data, Path(tmp, f"run-{cbwr}-{i}"), cbwr, args) for i in range(args.runs)]
            counts = collections.Counter(psnrs)
            value, times = counts.most_common(1)[0]
            print(f"| `{cbwr}` | {args.runs} | {len(counts)} | {value!r} ({times}) |", flush=True)


if __name__ == "__main__":
    main()
