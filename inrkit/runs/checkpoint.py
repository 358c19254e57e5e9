"""The checkpoint: ``checkpoint.safetensors`` and the resumable snapshot ``resume.pt``.

Checkpoints are safetensors (never pickle) with keys ``shared.<layer>.<param>`` and
``items.<i>.<layer>.<param>``, so one item can be read without touching the others. Everything
read back is untrusted: the metadata is checked against a schema (:class:`CheckpointInfo`), tensor
keys against their grammar, and tensor shapes against the model the run's config builds
(:func:`~inrkit.nn.check_state`). Files are written atomically (:mod:`inrkit.files`); the run
folder around them is :mod:`inrkit.runs.layout`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic
import torch

from inrkit.errors import CheckpointError, format_validation_error, one_line
from inrkit.files import atomic_write
from inrkit.interfaces import INRModel

CHECKPOINT_FORMAT = "inrkit.checkpoint"
CHECKPOINT_VERSION = "1"


def split_state(model: INRModel) -> dict[str, torch.Tensor]:
    """State dict with per-item tensors split: ``items.first.weight`` -> ``items.<i>.first.weight``.

    An item's tensors are views into the stacked tensor, not copies: safetensors writes views
    that do not overlap, and at 10^5 items a copy was the run's memory peak (1.7 GiB more than
    training at width 64, ``benchmarks/RESULTS.md``). Shared tensors are small and copied.
    """
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if key.startswith("items."):
            rest = key[len("items.") :]
            stacked = value.contiguous()
            for i in range(stacked.shape[0]):
                tensors[f"items.{i}.{rest}"] = stacked[i]
        else:
            tensors[key] = value.contiguous().clone()
    return tensors


def save_checkpoint(path: Path, model: INRModel, metadata: Mapping[str, Any]) -> None:
    from safetensors.torch import save_file

    meta = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    tensors = split_state(model)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


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
    handle, _ = open_checkpoint(path)
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


def open_checkpoint(path: Path) -> tuple[Any, dict[str, str]]:
    """A checkpoint's safetensors handle and raw metadata, after checking that inrkit wrote it in
    the format this version reads; reads only the header."""
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
    _, meta = open_checkpoint(path)
    out: dict[str, Any] = {}
    for key, value in meta.items():
        try:
            out[key] = json.loads(value)
        except (ValueError, RecursionError):
            out[key] = value
    return out


def read_tensor(handle: Any, key: str, path: Path) -> torch.Tensor:
    """One tensor of an open checkpoint; a damaged one is a :class:`~inrkit.errors.CheckpointError`."""
    try:
        return handle.get_tensor(key)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path}: cannot read tensor {key!r} (truncated or corrupt?): {one_line(str(exc))}") from None


def read_shared_state(path: Path) -> dict[str, torch.Tensor]:
    """Only the shared tensors (``shared.*``) of a checkpoint."""
    handle, _ = open_checkpoint(path)
    return {key: read_tensor(handle, key, path) for key in handle.keys() if key.startswith("shared.")}  # noqa: SIM118


def read_item_means(path: Path, n_items: int) -> dict[str, torch.Tensor]:
    """Each per-item tensor averaged over the run's items, keyed like a model's ``items.*``."""
    handle, _ = open_checkpoint(path)
    sums: dict[str, torch.Tensor] = {}
    for key in handle.keys():  # noqa: SIM118 - a safetensors handle is not a dict
        index, rest = parse_key(key, path)
        if index is not None:
            tensor = read_tensor(handle, key, path)
            name = f"items.{rest}"
            if name in sums and sums[name].shape != tensor.shape:
                raise CheckpointError(f"{path}: the items' {rest} tensors differ in shape")
            sums[name] = sums[name] + tensor if name in sums else tensor.clone()
    return {key: total / n_items for key, total in sums.items()}


def read_item_state(path: Path, index: int) -> dict[str, torch.Tensor]:
    """Shared tensors plus item ``index``'s tensors, as the state dict of a one-item model.

    Only those tensors are read from the file.
    """
    handle, _ = open_checkpoint(path)
    state: dict[str, torch.Tensor] = {}
    for key in handle.keys():  # noqa: SIM118 - a safetensors handle is not a dict
        item, rest = parse_key(key, path)
        if item is None and key.startswith("shared."):
            state[key] = read_tensor(handle, key, path)
        elif item == index:
            state["items." + rest] = read_tensor(handle, key, path).unsqueeze(0)
    return state


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint as the state dict of the whole model (per-item rows stacked)."""
    handle, _ = open_checkpoint(path)
    state: dict[str, torch.Tensor] = {}
    rows: dict[str, dict[int, torch.Tensor]] = {}
    for key in handle.keys():  # noqa: SIM118 - a safetensors handle is not a dict
        index, rest = parse_key(key, path)
        if index is not None:
            rows.setdefault(f"items.{rest}", {})[index] = read_tensor(handle, key, path)
        else:
            state[key] = read_tensor(handle, key, path)
    for key, by_index in rows.items():
        if sorted(by_index) != list(range(len(by_index))):
            raise CheckpointError(f"{path}: the rows of {key} are not numbered 0..{len(by_index) - 1}")
        if len({t.shape for t in by_index.values()}) > 1:
            raise CheckpointError(f"{path}: the rows of {key} differ in shape")
        state[key] = torch.stack([by_index[i] for i in range(len(by_index))])
    return state


# -- snapshots ------------------------------------------------------------------------------------
#: The keys of a training snapshot (``resume.pt``) and the types of their values.
SNAPSHOT_KEYS = {"step": int, "model": dict, "optimizer": dict, "scheduler": dict, "history": list, "seconds": float}


def save_resume(path: Path, state: dict[str, Any]) -> None:
    """A training snapshot (model, optimiser, schedule, history): tensors and plain data only."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


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
