"""``benchmarks/gpu_speed.py`` runs every one of its measurements on the CPU (``--smoke``), so the
script a card's short lease depends on cannot rot between leases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_speed.py"


@pytest.mark.slow
def test_gpu_speed_smoke_run_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gs"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert set(report["checks"]) == {"bench-16x256", "bench-kodak4", "run-default", "kodak4-5000"}
    rows = report["checks"]["bench-16x256"]
    assert all(row["bench"]["step_seconds"] > 0 for row in rows if row["status"] == "passed")
    assert [row["status"] for row in rows] == ["passed", "passed", "passed", "skipped", "passed"]
    assert report["checks"]["run-default"]["compile_reason"]
    assert "| eager |" in (out / "report.md").read_text()


def test_gpu_speed_refuses_a_missing_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
