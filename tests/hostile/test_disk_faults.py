"""Disk faults: a full or read-only disk loses nothing already written and leaves no half file.

The faults are injected (the suite may run as root, where permissions do not stop a write):
``tempfile.mkstemp`` or the writer raise the ``OSError`` a full or read-only disk raises.

Part of the hardening suite (``tests/hostile/``, one module per subject); the helpers are in
``support.py``, the ``images`` and ``tiny_run`` fixtures in ``tests/conftest.py``.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from support import TINY, cli, craft, interrupt_after_steps, one_clean_error

import inrkit
from inrkit import files
from inrkit.errors import StorageError, TrainingInterrupted


# -- 5. failed writes ------------------------------------------------------------------------------
def _disk_full(monkeypatch):
    """``safetensors.torch.save_file`` writing half the file and failing, as on a full disk."""
    import safetensors.torch

    real = safetensors.torch.save_file

    def failing(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"\0" * 100)  # what got out before the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", failing)
    return real


def test_a_full_disk_at_the_checkpoint_keeps_the_trained_model(images: Path, tmp_path: Path, monkeypatch):
    reference = inrkit.fit(TINY, data=[str(images)], out=tmp_path / "whole")
    real = _disk_full(monkeypatch)
    out = tmp_path / "full"
    result = cli("run", "--data", images, "--width", "8", "--layers", "3", "--steps", "2", "--lr", "1e-3",
                 "--out", out, "--no-progress")
    one_clean_error(result, "No space left on device", "saved as a snapshot", "--resume")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["config.json", "resume.pt"], names  # no partial checkpoint, no temporary file
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", real)
    resumed = inrkit.fit(resume=out)
    assert [it.psnr for it in resumed.metrics.items] == [it.psnr for it in reference.metrics.items]
    assert not (out / "resume.pt").exists() and (out / "checkpoint.safetensors").is_file()


def test_the_free_space_is_checked_before_training(images: Path, tmp_path: Path, monkeypatch):
    from inrkit.runs import fit as pipeline

    trained: list[int] = []
    monkeypatch.setattr(pipeline, "free_disk", lambda path: 10_000)
    monkeypatch.setattr(inrkit.Trainer, "fit", lambda *a, **k: trained.append(1))
    result = cli("run", "--data", images, "--width", "8", "--steps", "2", "--out", tmp_path / "r", "--no-progress")
    one_clean_error(result, "need about", "free")
    assert not trained and not (tmp_path / "r").exists()


def _read_only(monkeypatch, root: Path) -> None:
    """Creating files or folders under ``root`` fails as on a read-only file system."""
    import tempfile

    real_mkstemp, real_mkdir = tempfile.mkstemp, Path.mkdir

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and (Path(dir) == root or root in Path(dir).resolve().parents or Path(dir).resolve() == root.resolve()):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkstemp(*args, dir=dir, **kwargs)

    def mkdir(self, *args, **kwargs):
        resolved = Path(os.path.abspath(self))
        if (resolved == root or root in resolved.parents) and not self.exists():
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_no_out_in_a_read_only_working_directory(images: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _read_only(monkeypatch, tmp_path.resolve())
    result = cli("run", "--data", images, "--width", "8", "--steps", "1", "--no-progress")
    one_clean_error(result, "Read-only file system", "--out")


def test_resume_on_a_read_only_disk_is_refused_before_training(images: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        interrupt_after_steps(monkeypatch, 1)
        inrkit.fit({**TINY, "train": {"steps": 5}}, data=[str(images)], out=out)
    monkeypatch.undo()
    _read_only(monkeypatch, out.resolve())
    trained: list[int] = []
    real_fit = inrkit.Trainer.fit
    monkeypatch.setattr(inrkit.Trainer, "fit", lambda *a, **k: trained.append(1) or real_fit(*a, **k))
    one_clean_error(cli("run", "--resume", out), "Read-only file system")
    assert not trained and (out / "resume.pt").is_file()


def test_analyze_into_a_read_only_folder(tiny_run: Path, tmp_path: Path, monkeypatch):
    target = tmp_path / "ro"
    target.mkdir()
    _read_only(monkeypatch, target.resolve())
    one_clean_error(cli("analyze", "weights", tiny_run, "-o", target / "w.png"), "Read-only file system")
    assert list(target.iterdir()) == []


def test_a_full_disk_leaves_no_empty_figure(images: Path, tmp_path: Path, monkeypatch):
    import matplotlib.figure

    def full(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    with pytest.warns(RuntimeWarning, match="could not draw the plots"):
        inrkit.fit(TINY, data=[str(images)], out=tmp_path / "r", plots=True)
    assert not (tmp_path / "r" / "plots").exists() or not any((tmp_path / "r" / "plots").iterdir())
    assert (tmp_path / "r" / "checkpoint.safetensors").is_file()


# -- 8. analyze weights ----------------------------------------------------------------------------
def test_analyze_a_width_one_run(images: Path, tmp_path: Path):
    run = inrkit.fit({"model": {"width": 1, "layers": 3}, "train": {"steps": 2}}, data=[str(images)], out=tmp_path / "w1").run_dir
    result = cli("analyze", "weights", run, "-o", tmp_path / "w.png")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "w.json").read_text())
    assert (tmp_path / "w.png").stat().st_size > 0 and report["layers"]


def test_analyze_nan_weights_writes_valid_json(tiny_run: Path, tmp_path: Path):
    def poison(state):
        state["items.0.first.weight"] = torch.full_like(state["items.0.first.weight"], float("nan"))
        return state

    run = craft(tiny_run, tmp_path / "nan", tensors=poison)
    result = cli("analyze", "weights", run, "-o", tmp_path / "w.png")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "w.json").read_text()
    assert "NaN" not in text and json.loads(text)["layers"][0]["per_curve"]["nan/img0"]["mean"] is None


def test_analyze_writes_both_outputs_or_neither(tiny_run: Path, tmp_path: Path, monkeypatch):
    def broken(path, data):
        raise StorageError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(files, "write_json", broken)
    one_clean_error(cli("analyze", "weights", tiny_run, "-o", tmp_path / "w.png"), "No space left")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert cli("analyze", "weights", tiny_run, "-o", tmp_path / "w.png").exit_code == 0  # no --force needed
