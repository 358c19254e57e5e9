"""The run folder: ``config.json``, ``metrics.json``, ``recon/`` and ``checkpoint.safetensors``.

Nothing here overwrites: a run goes into a new or empty folder, and every file is written to a
temporary name and renamed into place, so an interrupted write never leaves a half file behind.
Checkpoints are safetensors (never pickle) with keys ``shared.<layer>.<param>`` and
``items.<i>.<layer>.<param>``, so one item can be read without touching the others.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from inrkit.errors import CheckpointError, ConfigError
from inrkit.interfaces import INRModel

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
RESUME_FILE = "resume.pt"
RECON_DIR = "recon"
CHECKPOINT_FORMAT = "inrkit.checkpoint"
CHECKPOINT_VERSION = "1"


def new_run_folder(out: str | Path | None, label: str, root: str | Path = "runs") -> Path:
    """Create the run folder; an existing non-empty folder is refused, never overwritten."""
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path(root) / f"{stamp}-{label}"
        base.parent.mkdir(parents=True, exist_ok=True)
        for k in range(1, 10_000):
            path = base if k == 1 else base.with_name(f"{base.name}-{k}")
            try:
                path.mkdir()  # atomic: two runs started in the same second get different folders
                return path
            except FileExistsError:
                continue
        raise ConfigError(f"cannot find a free run folder name next to {base}")
    else:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out {path} exists and is not a folder")
        if path.is_dir() and any(path.iterdir()):
            raise ConfigError(f"--out {path} already holds files; choose a new or empty folder (nothing was changed)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run folder {path}: {exc.strerror or exc}") from None
    return path


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None


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


def _open(path: Path) -> tuple[Any, dict[str, str]]:
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint (truncated or corrupt?): {exc}") from None
    meta = handle.metadata() or {}
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} was not written by inrkit (no '{CHECKPOINT_FORMAT}' metadata)")
    if meta.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {meta.get('format_version')!r}; "
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
        except ValueError:
            out[key] = value
    return out


def read_shared_state(path: Path) -> dict[str, torch.Tensor]:
    """Only the shared tensors (``shared.*``) of a checkpoint."""
    handle, _ = _open(path)
    try:
        return {key: handle.get_tensor(key) for key in handle.keys() if key.startswith("shared.")}  # noqa: SIM118
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot read tensors (truncated or corrupt?): {exc}") from None


def read_item_means(path: Path, n_items: int) -> dict[str, torch.Tensor]:
    """Each per-item tensor averaged over the run's items, keyed like a model's ``items.*``."""
    handle, _ = _open(path)
    sums: dict[str, torch.Tensor] = {}
    try:
        for key in handle.keys():  # noqa: SIM118 - a safetensors handle is not a dict
            if key.startswith("items."):
                _, _, rest = key.split(".", 2)
                tensor = handle.get_tensor(key)
                sums[f"items.{rest}"] = sums[f"items.{rest}"] + tensor if f"items.{rest}" in sums else tensor.clone()
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot read tensors (truncated or corrupt?): {exc}") from None
    return {key: total / n_items for key, total in sums.items()}


def read_item_state(path: Path, index: int) -> dict[str, torch.Tensor]:
    """Shared tensors plus item ``index``'s tensors, as the state dict of a one-item model.

    Only those tensors are read from the file.
    """
    handle, _ = _open(path)
    prefix = f"items.{index}."
    state: dict[str, torch.Tensor] = {}
    try:
        for key in handle.keys():  # noqa: SIM118 - a safetensors handle is not a dict
            if key.startswith("shared."):
                state[key] = handle.get_tensor(key)
            elif key.startswith(prefix):
                state["items." + key[len(prefix) :]] = handle.get_tensor(key).unsqueeze(0)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot read tensors (truncated or corrupt?): {exc}") from None
    return state


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint as the state dict of the whole model (per-item rows stacked)."""
    handle, _ = _open(path)
    state: dict[str, torch.Tensor] = {}
    rows: dict[str, dict[int, torch.Tensor]] = {}
    try:
        for key in handle.keys():  # noqa: SIM118 - a safetensors handle is not a dict
            if key.startswith("items."):
                _, index, rest = key.split(".", 2)
                rows.setdefault(f"items.{rest}", {})[int(index)] = handle.get_tensor(key)
            else:
                state[key] = handle.get_tensor(key)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot read tensors (truncated or corrupt?): {exc}") from None
    for key, by_index in rows.items():
        if sorted(by_index) != list(range(len(by_index))):
            raise CheckpointError(f"{path}: the rows of {key} are not numbered 0..{len(by_index) - 1}")
        state[key] = torch.stack([by_index[i] for i in range(len(by_index))])
    return state


def save_resume(path: Path, state: dict[str, Any]) -> None:
    """A training snapshot (model, optimiser, schedule, history): tensors and plain data only."""
    _atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_resume(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"nothing to resume: {path} does not exist (the run finished, or saved no snapshot)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # plain data: no pickled code
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path} is not a readable inrkit snapshot (truncated?): {exc}") from None
