"""``benchmarks/paper_gpu.py`` runs every cell of the paper's tables at smoke sizes on the CPU, so
the script a card's short lease depends on cannot rot; a second window resumes, never refits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "paper_gpu.py"


@pytest.mark.slow
def test_paper_gpu_smoke_runs_every_cell_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "pg"
    command = [sys.executable, str(SCRIPT), "--smoke", "--device", "cpu", "--out", str(out)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    results = json.loads((out / "paper_gpu.json").read_text())
    assert results["format"] == "inrkit-paper-gpu"
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import paper_gpu
    finally:
        sys.path.remove(str(SCRIPT.parent))
    assert set(results["cells"]) == {c.key for c in paper_gpu.cells()}  # every cell, the study first
    assert all(cell["card"] == "CPU" and cell["steps"] == 3 for cell in results["cells"].values())
    paper = (out / "PAPER.md").read_text()
    assert "smoke sizes" in paper and "unmeasured" not in paper and "38.24 ± 0.58" in paper
    again = subprocess.run([*command, "--budget", "0"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "running" not in again.stdout, again.stdout
    assert json.loads((out / "paper_gpu.json").read_text()) == results


def test_the_committed_paper_md_renders_from_the_committed_results(tmp_path: Path) -> None:
    """benchmarks/PAPER.md is generated: rendering the committed JSON gives the committed page."""
    committed = SCRIPT.parent / "PAPER.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--render-only", "--out", str(tmp_path), "--paper", str(tmp_path / "PAPER.md"),
                           "--results", str(SCRIPT.parent / "paper_gpu.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert committed.read_text() == (tmp_path / "PAPER.md").read_text(), "run python benchmarks/paper_gpu.py --render-only --out /tmp/x"
    assert "unmeasured" in committed.read_text() or "cells measured" in committed.read_text()
