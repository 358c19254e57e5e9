"""The layout of a run folder: its file names, creating a new folder, and failed runs.

A run goes into a new or empty folder and nothing here overwrites a finished run. A run that
fails before it can keep anything is marked with ``failed.json``; a new run given the same folder
may replace it. The checkpoint's format is :mod:`inrkit.runs.checkpoint`; writing and checksums
are :mod:`inrkit.files`.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import warnings
from pathlib import Path

from inrkit.errors import ConfigError, StorageError
from inrkit.files import os_reason, write_json
from inrkit.names import safe_name

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
RESUME_FILE = "resume.pt"
RECON_DIR = "recon"
FAILED_FILE = "failed.json"
#: Files whose SHA-256 a finished run records: the checkpoint and any compressed ``.inrz`` files.
CHECKSUMMED_SUFFIXES = (".safetensors", ".inrz")


def new_run_folder(out: str | Path | None, label: str, root: str | Path = "runs") -> Path:
    """Create the run folder; an existing non-empty folder is refused, never overwritten.

    The one exception is a folder marked failed (``failed.json``, and no ``metrics.json``): a run
    that diverged or was stopped before it could save a snapshot, which holds nothing to keep.
    Its contents are replaced, with a warning.
    """
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path(root) / f"{stamp}-{safe_name(label, 'run')}"
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            for k in range(1, 10_000):
                path = base if k == 1 else base.with_name(f"{base.name}-{k}")
                try:
                    path.mkdir()  # atomic: two runs started in the same second get different folders
                    return path
                except FileExistsError:
                    continue
        except OSError as exc:
            raise StorageError(
                f"cannot create a run folder in {base.parent.resolve()}: {os_reason(exc)} (give a writable --out)"
            ) from None
        raise ConfigError(f"cannot find a free run folder name next to {base}")
    else:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out {path} exists and is not a folder")
        if path.is_dir() and any(path.iterdir()):
            if not is_failed_run(path):
                raise ConfigError(f"--out {path} already holds files; choose a new or empty folder (nothing was changed)")
            clear_failed_run(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create run folder {path}: {os_reason(exc)}") from None
    return path


def is_failed_run(path: Path) -> bool:
    """A folder marked failed by inrkit (``failed.json``) that holds no finished run."""
    return (path / FAILED_FILE).is_file() and not (path / METRICS_FILE).exists()


def clear_failed_run(path: Path) -> None:
    """Empty a failed run's folder (links inside are removed, never followed)."""
    warnings.warn(f"replacing the failed run in {path}", RuntimeWarning, stacklevel=3)
    try:
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    except OSError as exc:
        raise StorageError(f"cannot replace the failed run in {path}: {os_reason(exc)}") from None


def mark_failed(path: Path, error: str) -> bool:
    """Mark a run folder failed (``failed.json``: why, and when); False if it cannot be written."""
    record = {
        "format": "inrkit.failed-run",
        "error": error,
        "time": _dt.datetime.now().isoformat(timespec="seconds"),
        "note": "a new run given this folder as --out replaces it",
    }
    try:
        write_json(path / FAILED_FILE, record)
    except StorageError:
        return False
    return True


def checksummed_files(folder: Path) -> list[Path]:
    """The files of a run folder whose SHA-256 is recorded: the checkpoint and ``*.inrz`` files."""
    return sorted(
        p for p in folder.iterdir() if p.suffix in CHECKSUMMED_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
