"""The ``.inrz`` file: a run's network, quantised and entropy-coded, in one documented container.

Layout (little endian)::

    b"INRZ"  u8 version  3 zero bytes  u32 header_length  u32 header_crc32
    header   zlib-compressed JSON (header_length bytes)
    shared section, then one section per item, back to back

The header holds the run's checkpoint metadata (config, plugin names and versions, items and
their shapes), the quantisation settings, the tensor layout (each tensor's name, shape, dtype and
whether it is quantised), and each section's length and CRC-32. A section is its tensors in the
layout's order: a quantised tensor is its steps (``u16`` count, then ``f32`` each) and its codes
as one :mod:`~inrkit.codec.entropy` block; a tensor kept exactly (buffers: item ids, coordinate maps)
is its raw bytes. Decoding one item reads the header, the shared section and that item's section
only. There is no pickle; a truncated, corrupted or newer file is one
:class:`~inrkit.errors.CheckpointError` that says which.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pydantic
import torch

from inrkit import files
from inrkit.codec.entropy import decode_block, encode_block
from inrkit.codec.quantize import Quantised, quantise
from inrkit.errors import CheckpointError, format_validation_error

MAGIC = b"INRZ"
VERSION = 1
SUFFIX = ".inrz"
_PREFIX = struct.Struct("<4sB3xII")
#: Largest header accepted, compressed and inflated: a file's header is untrusted input.
MAX_HEADER_BYTES = 256 << 20
#: Most elements one tensor of a file may declare (checked before anything is decoded; a
#: :class:`~inrkit.runs.folder.CompressedRun` also checks every shape against its config's model).
MAX_TENSOR_ELEMENTS = 1 << 28
#: Longest section a header may declare (1 TiB).
MAX_SECTION_BYTES = 1 << 40
_DTYPES = {"float32": torch.float32, "complex64": torch.complex64, "int64": torch.int64, "float64": torch.float64,
           "int32": torch.int32, "bool": torch.bool}


class TensorLayout(pydantic.BaseModel):
    """One tensor of a section: its key (per item: the name after ``items.<i>.``), shape, dtype,
    and whether it is quantised (``q``) or stored exactly (``raw``)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    key: str = pydantic.Field(min_length=1, max_length=1024)
    shape: list[pydantic.StrictInt] = pydantic.Field(max_length=8)
    dtype: str
    mode: str
    #: Bits of a quantised tensor (the first layer and biases may get more than the file's ``bits``).
    bits: int | None = pydantic.Field(None, ge=2, le=16)

    @pydantic.field_validator("dtype")
    @classmethod
    def _dtype(cls, value: str) -> str:
        if value not in _DTYPES:
            raise ValueError(f"unknown dtype {value!r}")
        return value

    @pydantic.field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in ("q", "raw"):
            raise ValueError(f"unknown mode {value!r}")
        return value

    @pydantic.field_validator("shape")
    @classmethod
    def _shape(cls, value: list[int]) -> list[int]:
        if any(s < 0 or s > MAX_TENSOR_ELEMENTS for s in value) or math.prod(value) > MAX_TENSOR_ELEMENTS:
            raise ValueError(f"implausible shape {value}")
        return value


class Header(pydantic.BaseModel):
    """The JSON header, checked before any of it sizes an allocation."""

    model_config = pydantic.ConfigDict(extra="allow")
    format: str
    version: int
    metadata: dict[str, Any]
    bits: int = pydantic.Field(ge=2, le=16)
    per_channel: bool
    shared: list[TensorLayout]
    item: list[TensorLayout]
    #: [length, crc32] of the shared section, then of each item's.
    sections: list[tuple[Annotated[int, pydantic.Field(ge=0, le=MAX_SECTION_BYTES)], Annotated[int, pydantic.Field(ge=0, le=2**32 - 1)]]] = (
        pydantic.Field(min_length=1)
    )


@dataclasses.dataclass
class Sizes:
    """Bytes of a written file by part."""

    header: int
    shared: int
    items: list[int]

    @property
    def total(self) -> int:
        return self.header + self.shared + sum(self.items)


def _layout(key: str, tensor: torch.Tensor, bits: int | None) -> TensorLayout:
    """``bits=None``: stored exactly."""
    dtype = str(tensor.dtype).removeprefix("torch.")
    return TensorLayout(key=key, shape=list(tensor.shape), dtype=dtype, mode="raw" if bits is None else "q", bits=bits)


def _quantisable(tensor: torch.Tensor) -> bool:
    return tensor.is_floating_point() or tensor.is_complex()


def _encode_tensor(tensor: torch.Tensor, layout: TensorLayout, per_channel: bool, steps: np.ndarray | None = None) -> bytes:
    array = tensor.detach().cpu().numpy()
    if layout.mode == "raw" or layout.bits is None:
        return np.ascontiguousarray(array).tobytes()
    q = quantise(array, layout.bits, per_channel, steps)
    block, _ = encode_block(q.codes)
    return struct.pack("<H", q.steps.size) + q.steps.astype("<f4").tobytes() + block


def _decode_tensor(data: bytes, offset: int, layout: TensorLayout, where: str) -> tuple[torch.Tensor, int]:
    dtype = _DTYPES[layout.dtype]
    count = math.prod(layout.shape)
    if layout.mode == "raw":
        size = count * torch.empty((), dtype=dtype).element_size()
        if offset + size > len(data):
            raise CheckpointError(f"{where}: the section ends early (truncated or corrupted)")
        array = np.frombuffer(data, dtype=torch.empty((), dtype=dtype).numpy().dtype, count=count, offset=offset)
        return torch.from_numpy(array.copy()).reshape(layout.shape), offset + size
    if offset + 2 > len(data):
        raise CheckpointError(f"{where}: the section ends early (truncated or corrupted)")
    (n_steps,) = struct.unpack_from("<H", data, offset)
    offset += 2
    if offset + 4 * n_steps > len(data):
        raise CheckpointError(f"{where}: the section ends early (truncated or corrupted)")
    steps = np.frombuffer(data, dtype="<f4", count=n_steps, offset=offset).astype(np.float32)
    offset += 4 * n_steps
    is_complex = dtype.is_complex
    shape = [*layout.shape, 2] if is_complex else list(layout.shape)
    channels = layout.shape[-1] if layout.shape else 1
    if n_steps != 1 and (len(layout.shape) < 2 or n_steps != channels):
        raise CheckpointError(f"{where}: {n_steps} step sizes do not fit a tensor of shape {tuple(layout.shape)}")
    if not (np.isfinite(steps).all() and (steps > 0).all()):
        raise CheckpointError(f"{where}: invalid step sizes (corrupted data)")
    codes, offset = decode_block(data, offset, math.prod(shape), where)
    values = Quantised(codes.reshape(shape), steps, is_complex).dequantise()
    tensor = torch.from_numpy(np.ascontiguousarray(values)).to(dtype)
    return tensor.reshape(layout.shape), offset


def split_for_coding(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """A model's state dict as its shared tensors and each item's tensors (``items.X`` rows)."""
    shared: dict[str, torch.Tensor] = {}
    per_item: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("items."):
            per_item[key[len("items.") :]] = value
        else:
            shared[key] = value
    n = next(iter(per_item.values())).shape[0] if per_item else 0
    return shared, [{k: v[i] for k, v in per_item.items()} for i in range(n)]


def write(
    path: Path, model_state: Mapping[str, torch.Tensor], tensor_bits: Mapping[str, int], metadata: Mapping[str, Any], n_items: int,
    *, bits: int, per_channel: bool = False, steps: Mapping[str, np.ndarray] | None = None,
) -> Sizes:
    """Quantise and code ``model_state`` into ``path`` (atomically); the bytes of each part.

    ``tensor_bits`` gives the bits of each state key to quantise (the model's parameters);
    other keys (buffers: item ids, coordinate maps, few and small) are stored exactly. ``bits``
    is the file's nominal bit depth, recorded in the header. ``steps`` fixes the step(s) of a key
    (per-item keys: one row per item) instead of choosing them (quantisation-aware training).
    """
    steps = steps or {}
    shared, items = split_for_coding(model_state)
    if len(items) not in (0, n_items):
        raise ValueError(f"the state holds {len(items)} items, the metadata {n_items}")
    items = items or [{} for _ in range(n_items)]  # a model without per-item tensors: one empty section per item

    def bits_of(key: str, tensor: torch.Tensor) -> int | None:
        return tensor_bits.get(key) if _quantisable(tensor) else None

    shared_layout = [_layout(k, v, bits_of(k, v)) for k, v in shared.items()]
    item_layout = [_layout(k, v, bits_of(f"items.{k}", v)) for k, v in (items[0].items() if items else [])]
    sections = [b"".join(_encode_tensor(shared[t.key], t, per_channel, steps.get(t.key)) for t in shared_layout)]
    for i, tensors in enumerate(items):
        sections.append(b"".join(
            _encode_tensor(tensors[t.key], t, per_channel, None if f"items.{t.key}" not in steps else steps[f"items.{t.key}"][i])
            for t in item_layout
        ))
    header = {
        "format": "inrkit-inrz", "version": VERSION, "metadata": dict(metadata), "bits": bits, "per_channel": per_channel,
        "shared": [t.model_dump(exclude_none=True) for t in shared_layout],
        "item": [t.model_dump(exclude_none=True) for t in item_layout],
        "sections": [[len(s), zlib.crc32(s)] for s in sections],
    }
    packed = zlib.compress(json.dumps(header, separators=(",", ":"), allow_nan=False).encode(), 9)
    prefix = _PREFIX.pack(MAGIC, VERSION, len(packed), zlib.crc32(packed))

    def dump(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(prefix)
            fh.write(packed)
            for section in sections:
                fh.write(section)

    files.atomic_write(path, dump)
    return Sizes(header=len(prefix) + len(packed), shared=len(sections[0]), items=[len(s) for s in sections[1:]])


class InrzFile:
    """An ``.inrz`` file opened for reading: its header checked, sections read on demand."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"compressed run not found: {self.path}")
        size = self.path.stat().st_size
        with open(self.path, "rb") as fh:
            prefix = fh.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size or prefix[:4] != MAGIC:
                raise CheckpointError(f"{self.path} is not an inrkit .inrz file (no INRZ signature)")
            _, version, length, crc = _PREFIX.unpack(prefix)
            if version > VERSION:
                raise CheckpointError(f"{self.path} is .inrz version {version}, newer than this inrkit reads ({VERSION}); upgrade inrkit")
            if version != VERSION:
                raise CheckpointError(f"{self.path}: unknown .inrz version {version}")
            if length > min(MAX_HEADER_BYTES, size - _PREFIX.size):
                raise CheckpointError(f"{self.path}: the header is cut off (truncated file?)")
            packed = fh.read(length)
        if zlib.crc32(packed) != crc:
            raise CheckpointError(f"{self.path}: the header's checksum does not match (corrupted file)")
        try:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(packed, MAX_HEADER_BYTES)
            if inflater.unconsumed_tail:
                raise CheckpointError(f"{self.path}: the header inflates beyond {MAX_HEADER_BYTES} bytes")
            self.header = Header.model_validate(json.loads(raw))
        except (zlib.error, ValueError, RecursionError) as exc:
            reason = format_validation_error(exc) if isinstance(exc, pydantic.ValidationError) else str(exc)[:200]
            raise CheckpointError(f"{self.path}: unreadable header: {reason}") from None
        if self.header.format != "inrkit-inrz":
            raise CheckpointError(f"{self.path}: not an inrkit compressed run (format {self.header.format[:40]!r})")
        self.metadata = self.header.metadata
        self._start = _PREFIX.size + length
        self._offsets = [0]
        for length, _ in self.header.sections:
            self._offsets.append(self._offsets[-1] + int(length))  # Python ints: no overflow
        expected = self._start + self._offsets[-1]
        if size < expected:
            raise CheckpointError(f"{self.path} is truncated: {size:,} bytes, its header describes {expected:,}")
        if size > expected:
            raise CheckpointError(f"{self.path} has {size - expected:,} bytes after its last section (corrupted file)")
        self.header_bytes = self._start

    @property
    def n_items(self) -> int:
        return len(self.header.sections) - 1

    def section_bytes(self) -> tuple[int, list[int]]:
        lengths = [s[0] for s in self.header.sections]
        return lengths[0], lengths[1:]

    def check_sections(self) -> int:
        """Read every section and check its CRC-32 without decoding it (a section is at most a
        tensor block, read one at a time); returns the number of sections checked."""
        for index in range(len(self.header.sections)):
            self._section(index)
        return len(self.header.sections)

    def _section(self, index: int) -> bytes:
        length, crc = self.header.sections[index]
        with open(self.path, "rb") as fh:
            fh.seek(self._start + int(self._offsets[index]))
            data = fh.read(length)
        if len(data) != length:
            raise CheckpointError(f"{self.path} is truncated")
        if zlib.crc32(data) != crc:
            name = "shared section" if index == 0 else f"section of item {index - 1}"
            raise CheckpointError(f"{self.path}: the {name} does not match its checksum (corrupted file)")
        return data

    def _tensors(self, index: int, layout: Sequence[TensorLayout]) -> dict[str, torch.Tensor]:
        data = self._section(index)
        where = f"{self.path} ({'shared section' if index == 0 else f'item {index - 1}'})"
        out: dict[str, torch.Tensor] = {}
        offset = 0
        for t in layout:
            out[t.key], offset = _decode_tensor(data, offset, t, f"{where}, tensor {t.key!r}")
        if offset != len(data):
            raise CheckpointError(f"{where}: {len(data) - offset} bytes left over after the last tensor (corrupted file)")
        return out

    def shared_state(self) -> dict[str, torch.Tensor]:
        return self._tensors(0, self.header.shared)

    def item_state(self, index: int) -> dict[str, torch.Tensor]:
        """Shared tensors plus item ``index``'s, as the state dict of a one-item model."""
        if not 0 <= index < self.n_items:
            raise CheckpointError(f"{self.path}: no item {index}")
        state = {k: v for k, v in self.shared_state().items() if k.startswith("shared.")}
        state.update({f"items.{k}": v.unsqueeze(0) for k, v in self._tensors(index + 1, self.header.item).items()})
        return state

    def state(self) -> dict[str, torch.Tensor]:
        """Every tensor, as the whole model's state dict (per-item rows stacked)."""
        state = self.shared_state()
        rows = [self._tensors(i + 1, self.header.item) for i in range(self.n_items)]
        for t in self.header.item:
            state[f"items.{t.key}"] = torch.stack([r[t.key] for r in rows]) if rows else torch.empty(0)
        return state


def is_inrz(path: str | Path) -> bool:
    """A file that starts with the ``.inrz`` signature."""
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as fh:
        return fh.read(4) == MAGIC
