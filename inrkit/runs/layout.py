"""The layout of a run folder: its file names, creating a new folder, and failed runs.

A run goes into a new or empty folder and nothing here overwrites a finished run. A run that
fails before it can keep anything is marked with ``failed.json`` (a format tag and the entries the
run left); a new run given the same folder replaces it only when the marker is inrkit's and the
folder holds nothing else: a file named ``failed.json`` alone proves nothing. The checkpoint's format is :mod:`inrkit.runs.checkpoint`; writing and checksums
are :mod:`inrkit.files`.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import warnings
from pathlib import Path

from inrkit.errors import ConfigError, StorageError
from inrkit.files import CHECKSUMS_FILE, os_reason, read_json, write_json
from inrkit.names import safe_name

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
RESUME_FILE = "resume.pt"
RECON_DIR = "recon"
FAILED_FILE = "failed.json"
FAILED_FORMAT = "inrkit.failed-run"
#: What a run writes into its folder whatever its callbacks: a failed run's folder may hold these.
RUN_ENTRIES = frozenset({CONFIG_FILE, CHECKPOINT_FILE, RESUME_FILE, RECON_DIR, FAILED_FILE, CHECKSUMS_FILE})
#: Files whose SHA-256 a finished run records: the checkpoint and any compressed ``.inrz`` files.
CHECKSUMMED_SUFFIXES = (".safetensors", ".inrz")


def new_run_folder(out: str | Path | None, label: str, root: str | Path = "runs") -> Path:
    """Create the run folder; an existing non-empty folder is refused, never overwritten.

    The one exception is a folder inrkit marked failed (its format-tagged ``failed.json``, no
    ``metrics.json``) that holds only what the failed run left: a run that diverged or was stopped
    before it could save a snapshot, with nothing to keep. Its contents are replaced, with a
    warning. Anything else in it (a user's own ``failed.json`` included) is refused.
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
        if check_new_run_folder(path):
            clear_failed_run(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create run folder {path}: {os_reason(exc)}") from None
    return path


def check_new_run_folder(path: Path) -> bool:
    """Refuse ``path`` as a new run's folder unless it is missing, empty, or a failed inrkit run
    holding only what that run left; writes nothing. True when it is such a failed run (which
    :func:`new_run_folder` empties)."""
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"--out {path} is a link to nothing ({os.readlink(path)}); remove it or choose another folder")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} exists and is not a folder")
    if not path.is_dir() or not any(path.iterdir()):
        return False
    foreign = foreign_entries(path)
    if foreign is None:
        raise ConfigError(f"--out {path} already holds files; choose a new or empty folder (nothing was changed)")
    if foreign:
        shown = ", ".join(foreign[:3]) + (", …" if len(foreign) > 3 else "")
        raise ConfigError(
            f"--out {path} is marked as a failed inrkit run but also holds {shown}, which that run did not "
            "write; choose a new or empty folder (nothing was changed)"
        )
    return True


def failed_record(path: Path) -> dict[str, object] | None:
    """The failed-run marker inrkit wrote in ``path`` (``None``: none, or not inrkit's)."""
    marker = path / FAILED_FILE
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        record = read_json(marker)
    except Exception:  # noqa: BLE001 - an unreadable marker is no proof of anything
        return None
    return record if isinstance(record, dict) and record.get("format") == FAILED_FORMAT else None


def is_failed_run(path: Path) -> bool:
    """A folder marked failed by inrkit (its ``failed.json``, format-tagged) with no finished run."""
    return failed_record(path) is not None and not (path / METRICS_FILE).exists()


def foreign_entries(path: Path) -> list[str] | None:
    """For a failed run's folder, the entries it holds that the run did not leave (``[]``: it may
    be emptied); ``None`` when ``path`` is not a failed inrkit run at all. What the run left is
    recorded in its marker; a marker without the record (older inrkit) vouches for the names
    every run writes (:data:`RUN_ENTRIES`) and nothing else."""
    record = failed_record(path)
    if record is None or (path / METRICS_FILE).exists():
        return None
    left = record.get("entries")
    own = set(RUN_ENTRIES) | ({str(e) for e in left} if isinstance(left, list) else set())
    return sorted(child.name for child in path.iterdir() if child.name not in own)


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
    """Mark a run folder failed (``failed.json``: why, when, and the entries the run left, which a
    new run given the folder may remove); False if it cannot be written."""
    try:
        entries = sorted(child.name for child in path.iterdir() if child.name != FAILED_FILE)
    except OSError:
        entries = []
    record = {
        "format": FAILED_FORMAT,
        "error": error,
        "entries": entries,
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
