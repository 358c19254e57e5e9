"""The speed check for a card: one command, at most six minutes on one H200, a report to commit.

    python benchmarks/gpu_speed.py --data ../shared/data --out gpu-speed/      # on a card
    python benchmarks/gpu_speed.py --smoke --device cpu --out /tmp/gs          # anywhere (CI)

What it measures, in order of value (``--budget SECONDS`` skips what would start after the
budget is spent, so a short lease still brings a report back):

- ``bench-16x256``: ``inrkit bench`` at 16 items of 256², width 256, 5 layers, MINR: eager,
  compiled, bf16 under compile, compiled with ``TORCHINDUCTOR_MAX_AUTOTUNE=1``, and one chunk
  against 8,192-point chunks; each row beside the naive loop and the ``torch.func`` ensemble.
- ``bench-kodak4``: the same at the Kodak-4 shape (4 × 768×512).
- ``run-default``: the default ``inrkit run`` (four built-in samples) with no speed flags: its
  step time, what ``train.compile=auto`` decided and why.
- ``kodak4-5000``: four full-size Kodak photos, MINR at width 256, 5,000 steps with no speed
  flags: seconds and PSNR (needs ``--data``; synthetic stand-ins under ``--smoke``).

CUDA graphs (``train.cuda_graphs``) are not implemented yet; the report says so rather than
leaving the row out. Every command runs as a user would run it (a subprocess with its own time
limit), so one failure never hides the others. ``report.json`` and ``report.md`` name the card,
the torch version, the commit and the date. ``--smoke`` shrinks every size to seconds on a CPU;
``tests/tools/test_gpu_speed.py`` runs it in CI so the script cannot rot.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

INRKIT = [sys.executable, "-m", "inrkit.cli"]


def sh(args: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """Run one command; ``(exit status, output, seconds)``, a timeout as status 124."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
        return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - started
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return 124, out + f"\n(timed out after {timeout:.0f} s)", time.perf_counter() - started


def last_json(text: str) -> Any:
    """The JSON object a command printed last (compilers may log before it)."""
    for start in sorted({i + 1 for i, c in enumerate(text) if c == "\n" and text[i + 1 : i + 2] == "{"} | ({0} if text.startswith("{") else set()), reverse=True):
        try:
            return json.JSONDecoder().raw_decode(text, start)[0]
        except ValueError:
            continue
    raise ValueError("no JSON object in the output")


def bench_rows(device: str, items: int, height: int, width: int, smoke: bool, timeout: float) -> list[dict[str, Any]]:
    """``inrkit bench`` in every mode this check compares (bench takes square images: the side
    is the one whose area matches ``height × width``)."""
    side = int(round((height * width) ** 0.5))
    base = [*INRKIT, "bench", "--device", device, "--items", str(items), "--size", str(side), "--width",
            "32" if smoke else "256", "--repeats", "2" if smoke else "5", "--json"]
    modes: list[tuple[str, list[str], dict[str, str]]] = [
        ("eager", [], {}),
        ("compiled", ["--compile"], {}),
        ("compiled bf16", ["--compile", "--precision", "bf16"], {}),
        ("compiled, max-autotune", ["--compile", "--no-naive"], {"TORCHINDUCTOR_MAX_AUTOTUNE": "1"}),
        ("eager, 8192-point chunks", ["--chunk-points", "8192", "--no-naive"], {}),
    ]
    rows = []
    for label, extra, env in modes:
        if env and not device.startswith("cuda"):  # max-autotune tunes GPU kernels; inductor's CPU path fails on it
            rows.append({"mode": label, "status": "skipped", "reason": "a GPU setting"})
            continue
        code, out, seconds = sh([*base, *extra], timeout, env)
        row: dict[str, Any] = {"mode": label, "status": "passed" if code == 0 else "failed", "seconds": round(seconds, 1)}
        if code == 0:
            try:
                row["bench"] = last_json(out)
            except ValueError:
                row["status"], row["error"] = "failed", "bench printed no JSON"
        else:
            row["error"] = out.strip().splitlines()[-1][:300] if out.strip() else f"exit {code}"
        rows.append(row)
    return rows


def fit(args: list[str], out: Path, timeout: float) -> dict[str, Any]:
    code, text, seconds = sh([*INRKIT, "run", *args, "--out", str(out), "--json", "--no-progress", "--no-plots"], timeout)
    if code != 0:
        return {"status": "failed", "seconds": round(seconds, 1), "error": text.strip().splitlines()[-1][:300] if text.strip() else f"exit {code}"}
    metrics = last_json(text)
    return {
        "status": "passed", "wall_seconds": round(seconds, 1), "train_seconds": metrics.get("seconds"),
        "steps": metrics.get("steps"), "psnr_mean": metrics.get("psnr_mean"),
        "ms_per_step": 1e3 * metrics["seconds"] / max(1, metrics["steps"]) if metrics.get("seconds") else None,
        "compiled": metrics.get("compiled"), "compile_reason": metrics.get("compile_reason"),
        "compile_seconds": metrics.get("compile_seconds"),
    }


def card(device: str) -> str:
    code, out, _ = sh([sys.executable, "-c", "import torch; print(torch.__version__); "
                       "print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"], 60)
    return out.strip().replace("\n", ", ") if code == 0 else "unknown"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# gpu_speed: {report['machine']}", "", f"{report['date']}, commit {report['commit']}, device {report['device']}"
             + (" (smoke sizes)" if report["smoke"] else ""), ""]
    for name, result in report["checks"].items():
        lines.append(f"## {name}")
        if isinstance(result, list):
            lines += ["", "| mode | step (ms) | naive (ms) | ensemble (ms) | floor (ms) | status |", "| --- | --- | --- | --- | --- | --- |"]
            for row in result:
                b = row.get("bench", {})
                cell = lambda k: f"{1e3 * b[k]:.2f}" if isinstance(b.get(k), (int, float)) else "–"  # noqa: E731
                lines.append(f"| {row['mode']} | {cell('step_seconds')} | {cell('naive_step_seconds')} | "
                             f"{cell('ensemble_step_seconds')} | {cell('floor_step_seconds')} | {row['status']} |")
        else:
            lines += ["", "```json", json.dumps(result, indent=2), "```"]
        lines.append("")
    lines.append("CUDA graphs: not implemented yet (no row).")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", type=Path, help="the shared data folder (its kodak/ is used)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: the same code paths in seconds")
    parser.add_argument("--budget", type=float, default=360.0, help="seconds; later checks are skipped once spent")
    opts = parser.parse_args()
    if opts.device.startswith("cuda"):
        code, out, _ = sh([sys.executable, "-c", "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"], 60)
        if code != 0:
            print("Error: --device cuda but torch sees no CUDA device here (use --device cpu --smoke)", file=sys.stderr)
            return 2
    opts.out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    report: dict[str, Any] = {
        "machine": card(opts.device), "device": opts.device, "smoke": opts.smoke, "commit": commit,
        "date": datetime.date.today().isoformat(), "checks": {},
    }
    started = time.perf_counter()
    small = opts.smoke
    kodak = sorted((opts.data / "kodak").glob("kodim0[1-4].png")) if opts.data else []
    plan: list[tuple[str, Any]] = [
        ("bench-16x256", lambda: bench_rows(opts.device, 2 if small else 16, 16 if small else 256, 16 if small else 256, small, 120)),
        ("bench-kodak4", lambda: bench_rows(opts.device, 2 if small else 4, 16 if small else 512, 24 if small else 768, small, 150)),
        ("run-default", lambda: fit(["--device", opts.device, *(["--steps", "3", "--width", "16"] if small else [])],
                                    opts.out / "run-default", 180)),
        ("kodak4-5000", lambda: (
            {"status": "skipped", "reason": "give --data (the shared data folder with kodak/)"} if not kodak and not small else
            fit(["--device", opts.device, "--steps", "3" if small else "5000", "--width", "16" if small else "256",
                 *([] if kodak and not small else ["--set", "signal.max_side=16"]), *map(str, kodak)],
                opts.out / "kodak4", 300)
        )),
    ]
    for name, run in plan:
        if time.perf_counter() - started > opts.budget:
            report["checks"][name] = {"status": "skipped", "reason": f"the {opts.budget:.0f} s budget was spent"}
            continue
        report["checks"][name] = run()
        (opts.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (opts.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (opts.out / "report.md").write_text(markdown(report))
    print(markdown(report))
    failed = [n for n, r in report["checks"].items() if (r.get("status") if isinstance(r, dict) else
              ("failed" if any(row["status"] == "failed" for row in r) else "passed")) == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
