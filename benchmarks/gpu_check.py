"""The GPU acceptance check: one command that proves inrkit's CUDA path on the card at hand.

    python benchmarks/gpu_check.py --out gpu-check/            # on a machine with a GPU
    python benchmarks/gpu_check.py --device cpu --smoke --out /tmp/gc   # the same steps on the CPU

Each check runs the command line as a user would (a subprocess, its own time limit), so one
failure never hides the others; the report (``report.json`` and ``report.md`` in ``--out``)
names the card and gives, per check, passed/failed/skipped, the figures and the reason. What it
covers (issue 17's items, by number):

- ``doctor``: versions, the card and its memory, TF32/bf16 support (``inrkit doctor --json``).
- ``fit``: the default MINR fit on the card with TF32 (2: the TF32 flags are read during a fit).
- ``cuda-tests``: the test suite's CUDA tests (``pytest -m cuda``).
- ``kodak4``: four full-size Kodak photos, MINR at width 256: seconds per 1,000 steps and PSNR
  (needs ``--data``; skipped without it, synthetic stand-ins under ``--smoke``).
- ``imagenet100``: 100 ImageNet photos of their own sizes in one MINR fit: seconds per step, PSNR.
- ``parity``: the same small fit on the CPU and on the card with TF32 off: PSNR within 0.05 dB.
- ``bf16`` and ``compile``: within 0.5 dB of fp32; compile time reported apart (6, 8).
- ``compare-compiled``: ``compare`` of three variants compiled, one after the other (6: dynamo is
  reset per fit, so no variant falls back to eager).
- ``wire``: a complex-valued backbone, with ``--compile`` asked for (6: skipped for complex nets).
- ``resume-on-cpu`` and ``encode-on-cpu``: a run trained on the card, interrupted, resumed and
  encoded into where no GPU is visible (9).
- ``many-items``: 512 small images in one MINR fit: item-block chunks sized to free memory,
  evaluation without the targets on the card (4, 5, 9); peak GPU memory against the targets' size.
- ``bench``: ``inrkit bench`` for MINR and separate SIRENs, eager fp32 against the naive
  per-image loop and the ``torch.func`` ensemble, and MINR in bf16 and compiled: step time against
  the floor measured with CUDA events (8).
- ``torchrun``: two processes with nccl when two GPUs are visible (1, 3); skipped otherwise.

Exit status 0 when no check failed. ``--smoke`` shrinks every size (a few minutes on a CPU; CI runs
it through ``tests/tools/test_gpu_check.py``, so the script cannot rot); the full check is sized to
finish in under 8 minutes on one H100. Checks run most valuable first; ``--budget SECONDS`` skips
the ones that would start after the budget is spent, so a short lease still brings a report back.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

INRKIT = [sys.executable, "-m", "inrkit.cli"]


class Check:
    """Runs commands for one check and collects its figures."""

    def __init__(self, name: str, out: Path, device: str, quick: bool, data: Path) -> None:
        self.name, self.device, self.quick, self.data = name, device, quick, data
        self.folder = out / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.figures: dict[str, Any] = {}

    def inrkit(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None) -> str:
        """Run ``inrkit ARGS``; its stdout, or an AssertionError with its stderr's last lines."""
        proc = subprocess.run([*INRKIT, *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        (self.folder / "log.txt").open("a").write(f"$ inrkit {' '.join(args)}\n{proc.stderr[-4000:]}\n")
        assert proc.returncode == 0, f"inrkit {args[0]} exited {proc.returncode}: {proc.stderr.strip()[-600:]}"
        return proc.stdout

    def run_json(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None) -> dict[str, Any]:
        return json.loads(self.inrkit(*args, "--json", timeout=timeout, env=env))


def small_fit(check: Check) -> list[str]:
    side, width, steps = (32, 32, 20) if check.quick else (128, 128, 200)
    return ["--set", f"signal.max_side={side}", "--width", str(width), "--steps", str(steps), "--no-progress", "--no-plots"]


def check_doctor(c: Check) -> None:
    report = c.run_json("doctor", "--no-compile-probe", "--runs", str(c.folder))
    c.figures["doctor"] = report


def check_fit(c: Check) -> None:
    steps = "20" if c.quick else "300"
    m = c.run_json("run", "--device", c.device, "--steps", steps, "--no-progress", "--no-plots", "--out", str(c.folder / "run"))
    c.figures.update(psnr=m["psnr_mean"], seconds=m["seconds"], device=m["device"])
    assert m["psnr_mean"] > 20, f"PSNR {m['psnr_mean']:.2f} dB after {steps} steps"


def check_cuda_tests(c: Check) -> None:
    """The suite's tests marked ``cuda`` (on the CPU they are collected and skipped)."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", str(root / "tests")],
                          capture_output=True, text=True, timeout=600, cwd=root)
    (c.folder / "pytest.txt").write_text(proc.stdout + proc.stderr)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {word: int(n) for n, word in (m.split()[:2] for m in summary.strip("= ").split(", ") if m[:1].isdigit())}
    c.figures.update({k: counts.get(k, 0) for k in ("passed", "skipped", "failed")})
    assert proc.returncode == 0, f"pytest -m cuda exited {proc.returncode}: {summary}"
    assert c.figures["passed"] + c.figures["skipped"] > 0, f"no CUDA test collected: {summary}"
    if c.device.startswith("cuda"):
        assert counts.get("passed", 0) > 0, f"no CUDA test ran on the card: {summary}"


def synthetic_images(folder: Path, n: int, side: int) -> Path:
    """``n`` smooth ``side``-square PNGs (sums of sinusoids): stand-ins where real photos are absent."""
    import numpy as np
    from PIL import Image

    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, side)
    for i in range(n):
        f = rng.uniform(1, 6, size=3)
        img = np.stack([np.sin(f[k] * np.add.outer(grid, grid * (k + 1))) for k in range(3)], -1)
        Image.fromarray(((img + 1) * 127.5).astype(np.uint8)).save(folder / f"img{i:04d}.png")
    return folder


def real_data(c: Check, *parts: str) -> list[str]:
    """Paths under ``--data``; under ``--smoke`` tiny synthetic stand-ins; else Skip when absent."""
    if c.quick:
        return [str(synthetic_images(c.folder / "images", 4, 24))]
    paths = [c.data / part for part in parts]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise Skip(f"no {', '.join(missing)} (give --data the shared data folder)")
    return [str(p) for p in paths]


def check_kodak4(c: Check) -> None:
    data = real_data(c, *(f"kodak/kodim{i:02d}.png" for i in range(1, 5)))
    width, steps = ("32", "20") if c.quick else ("256", "1000")
    args = ["run", "--device", c.device, "--sharing", "minr", "--width", width, "--steps", steps, "--no-progress", "--no-plots"]
    m = c.run_json(*args, *(x for path in data for x in ("--data", path)), "--out", str(c.folder / "run"), timeout=600)
    c.figures.update(items=len(m["items"]), psnr=m["psnr_mean"], steps=m["steps"], seconds=m["seconds"],
                     seconds_per_1000_steps=1000 * m["seconds"] / m["steps"])


def check_imagenet100(c: Check) -> None:
    data = real_data(c, "imagenet100")
    width, steps = ("32", "10") if c.quick else ("256", "100")
    m = c.run_json("run", "--device", c.device, "--sharing", "minr", "--width", width, "--steps", steps, "--no-progress",
                   "--no-plots", "--data", data[0], "--out", str(c.folder / "run"), timeout=600)
    c.figures.update(items=len(m["items"]), psnr=m["psnr_mean"], steps=m["steps"], seconds_per_step=m["seconds"] / m["steps"])


def check_parity(c: Check) -> None:
    args = [*small_fit(c), "--set", "train.tf32=false"]
    cpu = c.run_json("run", "--device", "cpu", *args, "--out", str(c.folder / "cpu"), timeout=900)
    dev = c.run_json("run", "--device", c.device, *args, "--out", str(c.folder / "dev"))
    c.figures.update(psnr_cpu=cpu["psnr_mean"], psnr_device=dev["psnr_mean"], difference=dev["psnr_mean"] - cpu["psnr_mean"])
    assert abs(dev["psnr_mean"] - cpu["psnr_mean"]) < 0.05, f"{c.device} {dev['psnr_mean']:.3f} dB, CPU {cpu['psnr_mean']:.3f} dB"


_FP32: dict[str, dict[str, Any]] = {}


def fp32_baseline(c: Check) -> dict[str, Any]:
    """The small eager fp32 fit that bf16 and compile are held against, run once per device."""
    if c.device not in _FP32:
        _FP32[c.device] = c.run_json("run", "--device", c.device, *small_fit(c), "--out", str(c.folder / "fp32"))
    return _FP32[c.device]


def check_bf16(c: Check) -> None:
    fp32 = fp32_baseline(c)
    bf16 = c.run_json("run", "--device", c.device, *small_fit(c), "--precision", "bf16", "--out", str(c.folder / "bf16"))
    c.figures.update(psnr_fp32=fp32["psnr_mean"], psnr_bf16=bf16["psnr_mean"], seconds_fp32=fp32["seconds"], seconds_bf16=bf16["seconds"])
    assert bf16["psnr_mean"] > fp32["psnr_mean"] - 0.5, f"bf16 {bf16['psnr_mean']:.2f} dB against fp32 {fp32['psnr_mean']:.2f}"


def check_compile(c: Check) -> None:
    eager = fp32_baseline(c)
    compiled = c.run_json("run", "--device", c.device, *small_fit(c), "--compile", "--out", str(c.folder / "compiled"), timeout=600)
    c.figures.update(psnr_eager=eager["psnr_mean"], psnr_compiled=compiled["psnr_mean"], seconds_eager=eager["seconds"],
                     seconds_compiled=compiled["seconds"], compile_seconds=compiled.get("compile_seconds"))
    assert abs(compiled["psnr_mean"] - eager["psnr_mean"]) < 0.5, f"compiled {compiled['psnr_mean']:.2f} dB, eager {eager['psnr_mean']:.2f}"


def check_compare_compiled(c: Check) -> None:
    args = [a for a in small_fit(c) if a != "--no-plots"]
    table = c.run_json("compare", "--device", c.device, "--sharing", "separate,minr,id", *args, "--compile",
                       "--out", str(c.folder / "compare"), timeout=900)
    rows = table if isinstance(table, list) else table.get("rows", [])
    c.figures["rows"] = rows
    assert len(rows) == 3, f"{len(rows)} rows in compare's table"


def check_wire(c: Check) -> None:
    m = c.run_json("run", "--device", c.device, "--activation", "wire", *small_fit(c), "--compile", "--out", str(c.folder / "run"))
    c.figures.update(psnr=m["psnr_mean"], seconds=m["seconds"], compile_seconds=m.get("compile_seconds"))


def _default_sigint() -> None:
    """In the child: SIGINT at its default, so that Python installs its KeyboardInterrupt handler
    even when this script runs in the background (where the shell has children ignore SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop(proc: subprocess.Popen) -> str:
    """Wait for an interrupted run; kill it if it does not end within 5 minutes. Its stderr."""
    try:
        return proc.communicate(timeout=300)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the run did not end within 5 minutes of Ctrl-C") from None


def _interrupt_after_snapshot(c: Check, out: Path, args: list[str]) -> None:
    """Start a long run, wait for its first snapshot, press Ctrl-C; it must exit 130 with resume.pt."""
    proc = subprocess.Popen([*INRKIT, "run", *args, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint)
    deadline = time.time() + 300
    while not (out / "resume.pt").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    err = _stop(proc)
    assert proc.returncode in (130, -signal.SIGINT), f"interrupted run exited {proc.returncode}: {err.strip()[-400:]}"
    assert (out / "resume.pt").is_file(), "no snapshot after Ctrl-C"


def check_resume_on_cpu(c: Check) -> None:
    """Interrupt a run on the card after a snapshot, then resume it where no GPU is visible until it
    saves a newer snapshot, and interrupt that too (the run's schedule is long on purpose)."""
    out = c.folder / "run"
    _interrupt_after_snapshot(c, out, ["--device", c.device, *small_fit(c), "--steps", "100000",
                                       "--set", "train.checkpoint_every=10"])
    c.figures["trained_on"] = json.loads((out / "config.json").read_text())["train"]["device"]
    before = (out / "resume.pt").stat().st_mtime
    proc = subprocess.Popen([*INRKIT, "run", "--resume", str(out), "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
                            preexec_fn=_default_sigint)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and (out / "resume.pt").stat().st_mtime == before:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    err = _stop(proc)
    (c.folder / "resumed-stderr.txt").write_text(err)
    assert proc.returncode in (130, -signal.SIGINT), f"resume without a GPU exited {proc.returncode}: {err.strip()[-400:]}"
    assert (out / "resume.pt").stat().st_mtime > before, "the resumed run saved no newer snapshot"


def check_encode_on_cpu(c: Check) -> None:
    run = c.folder / "run"
    c.run_json("run", "--device", c.device, *small_fit(c), "--out", str(run))
    no_gpu = {"CUDA_VISIBLE_DEVICES": ""}
    m = c.run_json("encode", str(run), "--data", "sample:rocket", "--steps", "10", "--out", str(c.folder / "encoded"),
                   "--no-progress", env=no_gpu, timeout=900)
    c.figures.update(psnr=m["psnr_mean"], device=m["device"])
    c.inrkit("decode", str(c.folder / "encoded"), "--all", "-o", str(c.folder / "png"), env=no_gpu)


def check_many_items(c: Check) -> None:
    n, side = (32, 16) if c.quick else (512, 64)
    data = synthetic_images(c.folder / "images", n, side)
    # In a process of its own through the Python API, to read the card's peak memory afterwards.
    code = (
        "import json, sys, torch, inrkit\n"
        "cfg = {'model': {'width': 64}, 'train': {'steps': int(sys.argv[3]), 'device': sys.argv[2]}}\n"
        "m = inrkit.fit(cfg, data=sys.argv[1], save=False).metrics\n"
        "peak = torch.cuda.max_memory_allocated() if sys.argv[2].startswith('cuda') else 0\n"
        "print(json.dumps({'psnr': m.psnr_mean, 'seconds': m.seconds, 'steps': m.steps, 'peak_bytes': peak}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(data), c.device, "20" if c.quick else "300"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr.strip()[-600:]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    targets = n * side * side * 3 * 4
    c.figures.update(items=n, side=side, psnr=m["psnr"], seconds_per_step=m["seconds"] / m["steps"],
                     target_megabytes=targets / 2**20, peak_gpu_megabytes=m["peak_bytes"] / 2**20)
    if c.device.startswith("cuda"):
        # Rank 0 holds its targets once (training) plus chunks; evaluation must not add a second copy
        # of every target and a full (N, P, C) output beside it (issue 17, item 4).
        assert m["peak_bytes"] < 2.5 * targets + 2 * 2**30, f"peak {m['peak_bytes'] / 2**20:.0f} MiB for {targets / 2**20:.0f} MiB of targets"


def check_bench(c: Check) -> None:
    size = ["--size", "32", "--repeats", "2", "--width", "32", "--items", "4"] if c.quick else ["--items", "16", "--size", "256"]
    runs = {f"{sharing}-fp32": c.run_json("bench", "--device", c.device, "--sharing", sharing, *size) for sharing in ("minr", "separate")}
    runs["minr-bf16"] = c.run_json("bench", "--device", c.device, "--no-naive", "--precision", "bf16", *size)
    runs["minr-compiled"] = c.run_json("bench", "--device", c.device, "--no-naive", "--compile", *size, timeout=600)
    c.figures["runs"] = runs
    for name, r in runs.items():  # the headline figures, flat for the report's table
        c.figures[f"{name}_step_ms"] = 1e3 * r["step_seconds"]
        for ratio in ("ratio_vs_naive", "ratio_vs_ensemble", "ratio_vs_floor"):
            if r[ratio] is not None:
                c.figures[f"{name}_{ratio}"] = r[ratio]


def check_torchrun(c: Check) -> None:
    import torch

    if c.device == "cpu" or torch.cuda.device_count() < 2:
        raise Skip("needs two visible GPUs")
    torchrun = shutil.which("torchrun") or f"{Path(sys.executable).parent}/torchrun"
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "inrkit.cli", "run", *small_fit(c),
                           "--device", "cuda", "--json", "--out", str(c.folder / "run")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.strip()[-600:]
    m = json.loads(proc.stdout)
    c.figures.update(psnr=m["psnr_mean"], processes=m["processes"], seconds=m["seconds"])
    # An error on rank 0 (its --out holds files) must end both ranks promptly with one message (item 3).
    busy = c.folder / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("not inrkit's")
    t = time.perf_counter()
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "inrkit.cli", "run", *small_fit(c),
                           "--device", "cuda", "--out", str(busy)], capture_output=True, text=True, timeout=600)
    c.figures["refusal_seconds"] = time.perf_counter() - t
    assert proc.returncode != 0 and "Error:" in proc.stderr, proc.stderr.strip()[-600:]
    assert c.figures["refusal_seconds"] < 120, f"the refusal took {c.figures['refusal_seconds']:.0f} s"


class Skip(Exception):
    pass


#: Most valuable first: a lease that runs out (``--budget``) still proves the path and brings figures.
CHECKS: dict[str, Callable[[Check], None]] = {
    "doctor": check_doctor, "fit": check_fit, "cuda-tests": check_cuda_tests, "parity": check_parity,
    "kodak4": check_kodak4, "bench": check_bench, "imagenet100": check_imagenet100, "many-items": check_many_items,
    "bf16": check_bf16, "compile": check_compile, "resume-on-cpu": check_resume_on_cpu, "encode-on-cpu": check_encode_on_cpu,
    "wire": check_wire, "compare-compiled": check_compare_compiled, "torchrun": check_torchrun,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="new folder for the report and each check's runs")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a smoke run")
    parser.add_argument("--smoke", "--quick", dest="quick", action="store_true", help="tiny sizes: a smoke run of every step")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data",
                        help="the shared data folder with kodak/ and imagenet100/ (default: ../shared/data)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds; checks that would start after this are skipped (default: no limit)")
    parser.add_argument("--only", default="", help="comma-separated checks to run (default: all): " + ",".join(CHECKS))
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out} exists and is not empty")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device is visible here; use --device cpu for a smoke run")
    card = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "cpu"
    names = [n for n in args.only.split(",") if n] or list(CHECKS)
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        parser.error(f"unknown checks {unknown}; known: {', '.join(CHECKS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": args.device, "card": card,
                              "torch": torch.__version__, "quick": args.quick, "checks": {}}
    started = time.perf_counter()
    for name in names:
        check = Check(name, args.out, args.device, args.quick, args.data)
        t = time.perf_counter()
        try:
            if args.budget is not None and t - started > args.budget:
                raise Skip(f"the --budget of {args.budget:.0f} s was spent")
            CHECKS[name](check)
            status, reason = "passed", ""
        except Skip as exc:
            status, reason = "skipped", str(exc)
        except Exception as exc:  # noqa: BLE001 - every failure is reported and the next check runs
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
        report["checks"][name] = {"status": status, "reason": reason, "seconds": round(time.perf_counter() - t, 1),
                                  "figures": check.figures}
        print(f"{name:17} {status:7} {time.perf_counter() - t:6.1f} s  {reason}", flush=True)
        (args.out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    report["seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    lines = [f"GPU check on {card} ({args.device}), torch {torch.__version__}, {report['date']}, {report['seconds']} s"
             + (" (--smoke)" if args.quick else ""), "", "| check | status | seconds | figures / reason |", "| --- | --- | --- | --- |"]
    for name, r in report["checks"].items():
        shown = r["reason"] or ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in r["figures"].items() if not isinstance(v, (dict, list)))
        lines.append(f"| {name} | {r['status']} | {r['seconds']} | {shown} |")
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if any(r["status"] == "failed" for r in report["checks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
