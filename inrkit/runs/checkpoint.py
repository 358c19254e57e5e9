"""The run folder: ``config.json``, ``metrics.json``, ``recon/`` and ``checkpoint.safetensors``.

Nothing here overwrites: a run goes into a new or empty folder, and every file is written to a
temporary name and renamed into place, so an interrupted write never leaves a half file behind.
Checkpoints are safetensors (never pickle) with keys ``shared.<layer>.<param>`` and
``items.<i>.<layer>.<param>``, so one item can be read without touching the others.

Everything read back is untrusted: the metadata is checked against a schema
(:class:`CheckpointInfo`), tensor keys against their grammar, tensor shapes against the model the
run's config builds (:func:`check_state`), and the checkpoint against the SHA-256 recorded in
``SHA256SUMS`` (the format ``sha256sum -c`` reads). A write that fails (a full disk, a read-only
folder) is one :class:`~inrkit.errors.StorageError` naming the file, and leaves no partial file.
A run that fails is marked with ``failed.json``; a new run may replace such a folder.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pydantic
import torch

from inrkit.errors import CheckpointError, ConfigError, DataError, StorageError, format_validation_error, one_line
from inrkit.interfaces import INRModel
from inrkit.limits import MAX_JSON_BYTES, check_regular_file
from inrkit.names import safe_name

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
RESUME_FILE = "resume.pt"
RECON_DIR = "recon"
CHECKSUMS_FILE = "SHA256SUMS"
FAILED_FILE = "failed.json"
CHECKPOINT_FORMAT = "inrkit.checkpoint"
CHECKPOINT_VERSION = "1"
#: Files whose SHA-256 a finished run records: the checkpoint and any compressed ``.inrz`` files.
CHECKSUMMED_SUFFIXES = (".safetensors", ".inrz")


def _os_reason(exc: OSError) -> str:
    return exc.strerror or one_line(str(exc)) or type(exc).__name__


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
                f"cannot create a run folder in {base.parent.resolve()}: {_os_reason(exc)} (give a writable --out)"
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
        raise StorageError(f"cannot create run folder {path}: {_os_reason(exc)}") from None
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
        raise StorageError(f"cannot replace the failed run in {path}: {_os_reason(exc)}") from None


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


def check_writable(folder: Path) -> None:
    """Refuse a folder this process cannot create files in (before hours of training, not after)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".inrkit-write-test.", dir=folder)
    except OSError as exc:
        raise StorageError(f"cannot write into {folder}: {_os_reason(exc)}") from None
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)


def _atomic_write(path: Path, write: Any) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it into place. Any failure
    (a full disk, a read-only folder) removes the temporary file and is a
    :class:`~inrkit.errors.StorageError` naming ``path``; an earlier file at ``path`` is kept."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {_os_reason(exc)}") from None
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {_os_reason(exc)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_file(path: Path, write: Any) -> Path:
    """Write a file atomically with ``write(tmp)`` (a figure's ``savefig``, an encoder's writer):
    never a partial file, a failure is one :class:`~inrkit.errors.StorageError`."""
    _atomic_write(Path(path), write)
    return Path(path)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, allow_nan=False)
            fh.write("\n")

    _atomic_write(path, write)


def read_json(path: Path) -> Any:
    """A JSON file of a run folder: a regular file of at most :data:`~inrkit.limits.MAX_JSON_BYTES`."""
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


def split_state(model: INRModel) -> dict[str, torch.Tensor]:
    """State dict with per-item tensors split: ``items.first.weight`` -> ``items.<i>.first.weight``."""
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if key.startswith("items."):
            rest = key[len("items.") :]
            for i in range(value.shape[0]):
                tensors[f"items.{i}.{rest}"] = value[i].contiguous().clone()
        else:
            tensors[key] = value.contiguous().clone()
    return tensors


def save_checkpoint(path: Path, model: INRModel, metadata: Mapping[str, Any]) -> None:
    from safetensors.torch import save_file

    meta = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    tensors = split_state(model)
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def state_bytes(model: INRModel) -> int:
    """Bytes of a model's tensors (works on the meta device, where nothing is allocated)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def trainable_bytes(model: INRModel) -> int:
    """Bytes of a model's trainable parameters: each has a gradient and two Adam moments of this size."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


# -- reading: schema, key grammar, shapes --------------------------------------------------------
class ItemRecord(pydantic.BaseModel):
    """One item as a checkpoint's metadata describes it."""

    model_config = pydantic.ConfigDict(extra="allow")

    name: str = pydantic.Field(max_length=4096)
    #: The shape the network was trained on (spatial axes).
    shape: list[pydantic.StrictInt] = pydantic.Field(min_length=1, max_length=8)
    #: The shape it is scored and decoded at by default (super-resolution: larger).
    eval_shape: list[pydantic.StrictInt] | None = pydantic.Field(None, min_length=1, max_length=8)
    channels: pydantic.StrictInt = pydantic.Field(ge=1, le=4096)

    @pydantic.field_validator("shape", "eval_shape")
    @classmethod
    def _positive(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(not 0 < n < 2**31 for n in value):
            raise ValueError("sizes must be positive integers below 2**31")
        return value


class CheckpointInfo(pydantic.BaseModel):
    """The metadata a checkpoint must hold to be decoded: its config (checked by the caller
    against :class:`~inrkit.config.RunConfig`) and its items."""

    model_config = pydantic.ConfigDict(extra="allow")

    config: dict[str, Any]
    items: list[ItemRecord] = pydantic.Field(min_length=1, max_length=10_000_000)

    @pydantic.model_validator(mode="after")
    def _same_dimensions(self) -> CheckpointInfo:
        if len({len(it.shape) for it in self.items}) > 1 or len({it.channels for it in self.items}) > 1:
            raise ValueError("the items differ in dimensionality or channels")
        for it in self.items:
            if it.eval_shape is not None and len(it.eval_shape) != len(it.shape):
                raise ValueError(f"item {it.name!r}: eval_shape and shape differ in dimensionality")
        return self


def validate_metadata(path: Path, metadata: Mapping[str, Any]) -> CheckpointInfo:
    """The checkpoint's metadata checked against :class:`CheckpointInfo`; one line naming the file."""
    try:
        return CheckpointInfo.model_validate(dict(metadata))
    except pydantic.ValidationError as exc:
        raise CheckpointError(f"{path}: invalid metadata: {format_validation_error(exc)}") from None


_ITEM_KEY = re.compile(r"items\.(0|[1-9][0-9]{0,8})\.(.+)")


def parse_key(key: str, path: Path) -> tuple[int | None, str]:
    """``items.<i>.<rest>`` -> ``(i, rest)``; any other key -> ``(None, key)``. A key that starts
    with ``items.`` but does not follow the grammar is a :class:`~inrkit.errors.CheckpointError`."""
    if not key or len(key) > 1024 or not key.isprintable():
        raise CheckpointError(f"{path}: malformed tensor key {key[:80]!r}")
    if key == "items" or key.startswith("items."):
        match = _ITEM_KEY.fullmatch(key)
        if match is None:
            raise CheckpointError(f"{path}: malformed tensor key {key[:80]!r} (expected items.<index>.<name>)")
        return int(match.group(1)), match.group(2)
    return None, key


def check_layout(path: Path, n_items: int) -> None:
    """Every tensor key follows the grammar, per-item keys are numbered ``0 .. n_items - 1`` (the
    metadata's item count), and every item has the same tensors. Reads only the header."""
    handle, _ = _open(path)
    per_item: dict[int, set[str]] = {}
    for key in handle.keys():  # noqa: SIM118 - a safetensors handle is not a dict
        index, rest = parse_key(key, path)
        if index is not None:
            if index >= n_items:
                raise CheckpointError(f"{path}: tensor {key!r} belongs to item {index}, but the metadata lists {n_items} item(s)")
            per_item.setdefault(index, set()).add(rest)
    if per_item:
        first = per_item.get(0, set())
        for index in range(n_items):
            if per_item.get(index, set()) != first:
                raise CheckpointError(f"{path}: item {index} does not have the same tensors as item 0")


def _kind(tensor: torch.Tensor) -> str:
    return "complex" if tensor.is_complex() else "float" if tensor.is_floating_point() else "other"


def check_state(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], source: str, hint: str = "") -> None:
    """Refuse tensors that do not fit a model: missing or unexpected keys, other shapes, real for
    complex. One line naming ``source``, the first mismatch and how many there are."""
    problems: list[str] = []
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing:
        problems.append(f"missing tensor(s) {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
    if unexpected:
        problems.append(f"unexpected tensor(s) {', '.join(unexpected[:3])}" + (" ..." if len(unexpected) > 3 else ""))
    for key, want in expected.items():
        got = found.get(key)
        if got is None:
            continue
        if not isinstance(got, torch.Tensor):
            problems.append(f"{key} is not a tensor")
        elif tuple(got.shape) != tuple(want.shape):
            problems.append(f"{key} has shape {tuple(got.shape)}, the run's config builds {tuple(want.shape)}")
        elif _kind(got) != _kind(want):
            problems.append(f"{key} has dtype {got.dtype}, the run's config builds {want.dtype}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CheckpointError(f"{source} does not match the model its config builds: {problems[0]}{more}{hint}")


def _open(path: Path) -> tuple[Any, dict[str, str]]:
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint (truncated or corrupt?): {one_line(str(exc))}") from None
    meta = handle.metadata() or {}
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} was not written by inrkit (no '{CHECKPOINT_FORMAT}' metadata)")
    if meta.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {str(meta.get('format_version'))[:20]!r}; "
            f"this inrkit reads version {CHECKPOINT_VERSION}"
        )
    return handle, meta


def read_metadata(path: Path) -> dict[str, Any]:
    """The checkpoint's metadata with JSON values decoded."""
    _, meta = _open(path)
    out: dict[str, Any] = {}
    for key, value in meta.items():
        try:
            out[key] = json.loads(value)
        except (ValueError, RecursionError):
            out[key] = value
    return out


def _tensor(handle: Any, key: str, path: Path) -> torch.Tensor:
    try:
        return handle.get_tensor(key)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path}: cannot read tensor {key!r} (truncated or corrupt?): {one_line(str(exc))}") from None


def read_shared_state(path: Path) -> dict[str, torch.Tensor]:
    """Only the shared tensors (``shared.*``) of a checkpoint."""
    handle, _ = _open(path)
    return {key: _tensor(handle, key, path) for key in handle.keys() if key.startswith("shared.")}  # noqa: SIM118


def read_item_means(path: Path, n_items: int) -> dict[str, torch.Tensor]:
    """Each per-item tensor averaged over the run's items, keyed like a model's ``items.*``."""
    handle, _ = _open(path)
    sums: dict[str, torch.Tensor] = {}
    for key in handle.keys():  # noqa: SIM118 - a safetensors handle is not a dict
        index, rest = parse_key(key, path)
        if index is not None:
            tensor = _tensor(handle, key, path)
            name = f"items.{rest}"
            if name in sums and sums[name].shape != tensor.shape:
                raise CheckpointError(f"{path}: the items' {rest} tensors differ in shape")
            sums[name] = sums[name] + tensor if name in sums else tensor.clone()
    return {key: total / n_items for key, total in sums.items()}


def read_item_state(path: Path, index: int) -> dict[str, torch.Tensor]:
    """Shared tensors plus item ``index``'s tensors, as the state dict of a one-item model.

    Only those tensors are read from the file.
    """
    handle, _ = _open(path)
    state: dict[str, torch.Tensor] = {}
    for key in handle.keys():  # noqa: SIM118 - a safetensors handle is not a dict
        item, rest = parse_key(key, path)
        if item is None and key.startswith("shared."):
            state[key] = _tensor(handle, key, path)
        elif item == index:
            state["items." + rest] = _tensor(handle, key, path).unsqueeze(0)
    return state


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint as the state dict of the whole model (per-item rows stacked)."""
    handle, _ = _open(path)
    state: dict[str, torch.Tensor] = {}
    rows: dict[str, dict[int, torch.Tensor]] = {}
    for key in handle.keys():  # noqa: SIM118 - a safetensors handle is not a dict
        index, rest = parse_key(key, path)
        if index is not None:
            rows.setdefault(f"items.{rest}", {})[index] = _tensor(handle, key, path)
        else:
            state[key] = _tensor(handle, key, path)
    for key, by_index in rows.items():
        if sorted(by_index) != list(range(len(by_index))):
            raise CheckpointError(f"{path}: the rows of {key} are not numbered 0..{len(by_index) - 1}")
        if len({t.shape for t in by_index.values()}) > 1:
            raise CheckpointError(f"{path}: the rows of {key} differ in shape")
        state[key] = torch.stack([by_index[i] for i in range(len(by_index))])
    return state


# -- integrity: SHA256SUMS ------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {_os_reason(exc)}") from None
    return digest.hexdigest()


def checksummed_files(folder: Path) -> list[Path]:
    """The files of a run folder whose SHA-256 is recorded: the checkpoint and ``*.inrz`` files."""
    return sorted(
        p for p in folder.iterdir() if p.suffix in CHECKSUMMED_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )


def write_checksums(folder: Path, files: Iterable[Path] | None = None) -> Path:
    """Record the SHA-256 of the checkpoint (and ``.inrz`` files) in ``SHA256SUMS``, in the format
    ``sha256sum -c SHA256SUMS`` checks."""
    chosen = list(files) if files is not None else checksummed_files(folder)
    lines = "".join(f"{sha256_of(p)}  {p.name}\n" for p in chosen)
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


# -- snapshots ------------------------------------------------------------------------------------
#: The keys of a training snapshot (``resume.pt``) and the types of their values.
SNAPSHOT_KEYS = {"step": int, "model": dict, "optimizer": dict, "scheduler": dict, "history": list, "seconds": float}


def save_resume(path: Path, state: dict[str, Any]) -> None:
    """A training snapshot (model, optimiser, schedule, history): tensors and plain data only."""
    _atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_resume(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"nothing to resume: {path} does not exist (the run finished, or saved no snapshot)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # plain data: no pickled code
    except Exception as exc:  # noqa: BLE001
        reason = one_line(str(exc).split("\n")[0])[:200] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable inrkit snapshot (truncated, or not written by inrkit): {reason}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not an inrkit snapshot (it holds a {type(state).__name__}, not a dict)")
    for key, kind in SNAPSHOT_KEYS.items():
        value = state.get(key)
        ok = not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else kind)
        if not ok:
            raise CheckpointError(f"{path} is not an inrkit snapshot: {key!r} is missing or not a {kind.__name__}")
    if state["step"] < 0 or not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        raise CheckpointError(f"{path} is not an inrkit snapshot: a bad step or model tensors")
    return state
