"""Long runs survive interruption: snapshots, Ctrl-C, SIGKILL, and ``--resume`` to the same end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import inrkit
from inrkit.cli import main

STEPS = 600
CONFIG = {"model": {"width": 16, "layers": 3}, "train": {"steps": STEPS, "lr": 1e-3, "seed": 3, "checkpoint_every": 5}}


@pytest.mark.slow
def test_sigkill_then_resume_ends_exactly_like_an_uninterrupted_run(image_dir: Path, tmp_path: Path):
    reference = inrkit.fit(CONFIG, data=[str(image_dir)], out=tmp_path / "whole")
    assert not (tmp_path / "whole" / "resume.pt").exists()  # a finished run keeps no snapshot

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "inrkit.cli", "run", "--data", str(image_dir), "--width", "16", "--layers", "3",
           "--steps", str(STEPS), "--lr", "1e-3", "--seed", "3", "--set", "train.checkpoint_every=5",
           "--out", str(out), "--no-progress", "--no-plots"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "resume.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "metrics.json").exists()

    resumed = inrkit.fit(resume=out)
    assert [it["psnr"] for it in resumed.metrics["items"]] == [it["psnr"] for it in reference.metrics["items"]]
    assert resumed.metrics["history"] == reference.metrics["history"]
    assert not (out / "resume.pt").exists() and (out / "checkpoint.safetensors").is_file()


def test_resume_refuses_finished_and_unknown_runs(image_dir: Path, tmp_path: Path):
    done = inrkit.fit({"model": {"width": 8}, "train": {"steps": 2}}, data=[str(image_dir)], out=tmp_path / "done").run_dir
    for target, message in [(done, "has finished"), (tmp_path / "nothing", "nothing to resume")]:
        r = CliRunner().invoke(main, ["run", "--resume", str(target)])
        assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output, r.output
    r = CliRunner().invoke(main, ["run", "--resume", str(done), "--steps", "5"])
    assert r.exit_code != 0 and "give no other run options" in r.output


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_ctrl_c_saves_a_snapshot_and_exits_cleanly(image_dir: Path, tmp_path: Path):
    out = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "inrkit.cli", "run", "--data", str(image_dir), "--width", "16", "--layers", "3",
           "--steps", "100000", "--set", "train.checkpoint_every=50", "--out", str(out), "--no-progress", "--no-plots"]
    # Ctrl-C must reach the run even when the tests were started in the background (where the
    # shell has the children ignore SIGINT, and Python then installs no KeyboardInterrupt handler).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "resume.pt").exists() and time.time() < deadline:  # training is under way
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "continue with --resume" in err and "Traceback" not in err
    snapshot = __import__("torch").load(out / "resume.pt", weights_only=True)
    assert snapshot["step"] >= 1 and json.loads((out / "config.json").read_text())["train"]["steps"] == 100000
