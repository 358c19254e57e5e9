"""``benchmarks/gpu_check.py`` runs every one of its checks on the CPU (``--smoke``), so the script a
card's few minutes depend on is known to work before a card is at hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_gpu_check_smoke_run_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "check"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    report = json.loads((out / "report.json").read_text())
    statuses = {name: r["status"] for name, r in report["checks"].items()}
    assert proc.returncode == 0, (statuses, proc.stdout[-3000:])
    assert statuses.pop("torchrun") == "skipped"
    assert set(statuses.values()) == {"passed"}, statuses
    assert report["checks"]["parity"]["figures"]["difference"] == 0.0
    assert (out / "report.md").read_text().startswith("GPU check on cpu")


def test_gpu_check_refuses_a_missing_gpu_and_unknown_checks(tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "a")], capture_output=True, text=True)
        assert proc.returncode == 2 and "no CUDA device is visible" in proc.stderr
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--only", "nope", "--out", str(tmp_path / "b")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown checks" in proc.stderr
