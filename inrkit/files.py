"""Writing and reading files safely: the one home of atomic writes, JSON and ``SHA256SUMS``.

Every file inrkit writes (run folders, figures, tables, ``.inrz`` files, images, a plugin's
reconstructions) goes through :func:`atomic_write`: written to a temporary name beside its
target and renamed into place, so an interrupted or failed write never leaves a half file behind
and an earlier file at the same path is kept. A failure of the file system (a full disk, a
read-only folder) is one :class:`~inrkit.errors.StorageError` naming the file.

Everything read back is untrusted: :func:`read_json` reads regular files of bounded size only,
:func:`read_record` also checks the fields a record must have (their types, numbers finite), and :func:`read_checksums` accepts only ``<sha256>  <file name>`` lines naming files of the folder
itself (the format ``sha256sum -c`` checks).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from inrkit.errors import CheckpointError, DataError, StorageError, one_line
from inrkit.limits import MAX_JSON_BYTES, check_regular_file
from inrkit.names import safe_name

#: The checksum list of a folder, in the format ``sha256sum -c`` reads.
CHECKSUMS_FILE = "SHA256SUMS"


def os_reason(exc: OSError) -> str:
    """The file system's reason for a failure, short (``No space left on device``)."""
    return exc.strerror or one_line(str(exc)) or type(exc).__name__


def check_writable(folder: Path) -> None:
    """Refuse a folder this process cannot create files in (before hours of training, not after)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".inrkit-write-test.", dir=folder)
    except OSError as exc:
        raise StorageError(f"cannot write into {folder}: {os_reason(exc)}") from None
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    The temporary file is hidden (a leading dot) and keeps ``path``'s suffix, so writers that
    choose a format by the file name (matplotlib, PyAV) see the real one. Any failure removes
    it; one of the file system's is a :class:`~inrkit.errors.StorageError` naming ``path``, and an
    earlier file at ``path`` is kept.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {os_reason(exc)}") from None
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {os_reason(exc)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically; NaN and infinities are refused, not written."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, allow_nan=False)
            fh.write("\n")

    atomic_write(path, write)


def read_json(path: Path) -> Any:
    """A JSON file inrkit wrote: a regular file of at most :data:`~inrkit.limits.MAX_JSON_BYTES`;
    anything else is a :class:`~inrkit.errors.CheckpointError` naming it."""
    if not os.path.lexists(path):
        raise CheckpointError(f"{path} is missing")
    try:
        check_regular_file(path, "file")
    except DataError as exc:
        raise CheckpointError(str(exc)) from None
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise CheckpointError(f"{path} is {size:,} bytes; inrkit reads JSON files of at most {MAX_JSON_BYTES:,}")
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {one_line(str(exc))}") from None


#: The kinds of value a record's field may hold (numbers exclude booleans and must be finite).
FIELD_KINDS: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "number?": lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)),
    "list": lambda v: isinstance(v, list),
    "dict": lambda v: isinstance(v, dict),
}


def read_record(path: Path, fields: Mapping[str, str], what: str, *, fix: str = "delete it") -> dict[str, Any]:
    """A JSON object inrkit wrote, with every field of ``fields`` (name -> a kind of
    :data:`FIELD_KINDS`) present and of its kind; anything else is one
    :class:`~inrkit.errors.CheckpointError` naming the file, the field and ``fix``."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not {what}: it holds {type(data).__name__}, not a table ({fix})")
    for name, kind in fields.items():
        if name not in data:
            raise CheckpointError(f"{path} is not {what}: it has no {name!r} ({fix})")
        if not FIELD_KINDS[kind](data[name]):
            raise CheckpointError(f"{path} is not {what}: its {name!r} is {str(data[name])[:40]!r} ({fix})")
    return data


# -- integrity: SHA256SUMS ------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {os_reason(exc)}") from None
    return digest.hexdigest()


def write_checksums(folder: Path, files: Iterable[Path]) -> Path:
    """Record the SHA-256 of ``files`` (files of ``folder``) in ``folder/SHA256SUMS``, in the
    format ``sha256sum -c SHA256SUMS`` checks."""
    lines = "".join(f"{sha256_of(p)}  {p.name}\n" for p in files)
    path = folder / CHECKSUMS_FILE
    write_text(path, lines)
    return path


_SUM_LINE = re.compile(r"([0-9a-f]{64}) [ *]([^/\\]+)")


def read_checksums(folder: Path) -> dict[str, str] | None:
    """``{file name: sha256}`` from ``SHA256SUMS``, or ``None`` when the folder has none (a run
    written before inrkit recorded them). Names are plain file names in ``folder``, nothing else."""
    path = folder / CHECKSUMS_FILE
    if not os.path.lexists(path):
        return None
    try:
        check_regular_file(path, "file")
        if path.stat().st_size > 1 << 20:
            raise CheckpointError(f"{path} is too large to be a checksum list")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, DataError) as exc:
        raise CheckpointError(f"cannot read {path}: {one_line(str(exc))}") from None
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _SUM_LINE.fullmatch(line.strip())
        name = match.group(2) if match else ""
        if match is None or name in (".", "..") or name != safe_name(name, ""):
            raise CheckpointError(f"{path}, line {number}: not a '<sha256>  <file name>' line of this folder")
        sums[name] = match.group(1)
    return sums


def verify_checksums(folder: Path, required: Iterable[str] = ()) -> list[str]:
    """Check every file ``SHA256SUMS`` lists (and that it lists each of ``required`` that exists);
    returns the names checked, ``[]`` when the folder records no checksums."""
    sums = read_checksums(folder)
    if sums is None:
        return []
    for name in required:
        if name not in sums and (folder / name).exists():
            raise CheckpointError(f"{folder / CHECKSUMS_FILE} does not list {name}")
    for name, digest in sums.items():
        target = folder / name
        if not target.is_file():
            raise CheckpointError(f"{target} is listed in {CHECKSUMS_FILE} but missing (or not a regular file)")
        if sha256_of(target) != digest:
            raise CheckpointError(
                f"{target} does not match its SHA-256 in {CHECKSUMS_FILE}: the file was truncated, changed or corrupted "
                "after the run wrote it"
            )
    return sorted(sums)
