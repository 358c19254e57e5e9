"""Image data sets stored as one NumPy array: ``.npy`` files and ``.npz`` members, memory-mapped.

An array holds ``N`` images of one size, ``(N, H, W, C)`` with 1–4 channels last or ``(N, H, W)``
gray, as ``uint8`` (divided by 255), ``uint16`` (by 65535) or floats (``float16``/``32``/``64``)
already in [0, 1]. :func:`open_array` reads and checks only the header; :func:`to_images` turns the
pixels into one float32 array ``(N, H', W', C')`` in [0, 1] (the items are views of it), reading
the stored array chunk by chunk:

- a ``.npy`` file and an uncompressed (``ZIP_STORED``, ``np.savez``) ``.npz`` member are
  memory-mapped at their data offset, and each chunk's pages are released once converted, so a
  100,000-image set is held once, as the float32 result, never also as its stored bytes;
- a compressed member (``np.savez_compressed``) is decompressed once, as a stream, chunk by chunk
  (a Fortran-ordered one is read whole first).

The files are untrusted: nothing is ever unpickled (a ``.npy`` of Python objects, or a pickle
named ``.npy``, is refused from its first bytes), and everything the header says is checked
before anything is allocated: the rank, the channel axis (an ``(N, C, H, W)`` array is named as
such, with the fix), the dtype, each image's pixels against the pixel limit
(:func:`inrkit.limits.pixel_limit`), that the data the header promises is in the file, and that
the float32 result fits in the memory the machine has. Float pixels are checked chunk by chunk:
NaN, infinities and values outside [0, 1] are refused with their count, the first item holding
one and the range seen. Each problem is one :class:`~inrkit.errors.DataError` naming the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import mmap
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.lib.format as npformat

from inrkit.errors import DataError, one_line
from inrkit.images import shrink_to_max_side, to_channels
from inrkit.limits import (
    MEMORY_CHECK_ENV,
    available_memory,
    check_pixels,
    check_regular_file,
    count_pixels,
    format_bytes,
    memory_check_enabled,
    pixel_limit,
)
from inrkit.names import printable

#: Suffixes of the array files the image signal reads (named as files or matched by globs).
ARRAY_SUFFIXES = frozenset({".npy", ".npz"})
#: Float32 bytes of converted pixels per chunk: small enough to keep the temporaries cache- and
#: memory-friendly, large enough that 100,000 small images take a few dozen chunks.
CHUNK_BYTES = 16 * 2**20
#: Keys of an ``.npz`` listed in an error at most.
SHOWN_KEYS = 20

_ACCEPTED = "uint8, uint16, float16, float32 or float64"
_ZIP_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_ZIP_LOCAL_MAGIC = b"PK\x03\x04"


@dataclasses.dataclass
class ArraySource:
    """One stored image array, its header checked (see :func:`open_array`); no pixels read yet."""

    #: The file, as given.
    path: str
    #: The ``.npz`` member's key (its name without ``.npy``); ``None`` for a ``.npy`` file.
    key: str | None
    #: The stored shape: ``(N, H, W)`` or ``(N, H, W, C)``.
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    #: Where the data starts in ``path`` when it can be memory-mapped (``None``: compressed member).
    offset: int | None
    #: The zip member the data is read from when it is compressed.
    member: zipfile.ZipInfo | None = None

    @property
    def what(self) -> str:
        """How messages name the array: the file, and the key of an ``.npz``."""
        return self.path if self.key is None else f"{self.path} (key {printable(self.key)!r})"

    @property
    def count(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """Each image's ``(height, width)``."""
        return self.shape[1], self.shape[2]

    @property
    def channels(self) -> int:
        """Stored channels per pixel (1 for an ``(N, H, W)`` array)."""
        return self.shape[3] if len(self.shape) == 4 else 1

    @property
    def bit_depth(self) -> int:
        """What reconstructions are written at, as for image files: 16 for uint16, else 8."""
        return 16 if self.dtype.kind == "u" and self.dtype.itemsize == 2 else 8

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def is_array_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an array file by its suffix (``.npy`` or ``.npz``)."""
    return Path(path).suffix.lower() in ARRAY_SUFFIXES


def open_array(path: str | os.PathLike[str], key: str | None = None, max_pixels: int | None = None) -> ArraySource:
    """The header of a ``.npy`` file or of one ``.npz`` member, checked; no pixels are read.

    ``key`` chooses the member of an ``.npz`` holding several arrays (one array needs none); it
    is ignored for a ``.npy``. Every problem is a :class:`~inrkit.errors.DataError` naming the file.
    """
    path = str(path)
    check_regular_file(path, "array file")
    try:
        if Path(path).suffix.lower() == ".npz":
            return _open_npz(path, key, max_pixels)
        with open(path, "rb") as fh:
            shape, dtype, fortran = _read_header(fh, path)
            offset = fh.tell()
        source = ArraySource(path, None, shape, dtype, fortran, offset)
        _check(source, os.path.getsize(path) - offset, max_pixels)
        return source
    except DataError:
        raise
    except OSError as exc:
        raise DataError(f"cannot read array file {path}: {exc.strerror or exc}") from None


def _read_header(fh: IO[bytes], what: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Shape, dtype and order from a ``.npy`` header; never reads past it, never unpickles."""
    start = fh.read(len(npformat.MAGIC_PREFIX))
    if start != npformat.MAGIC_PREFIX:
        hint = " (it looks like a pickle, which inrkit never loads)" if start[:1] == b"\x80" else ""
        raise DataError(f"{what} is not a NumPy .npy array: it does not start with NumPy's magic string{hint}")
    version = fh.read(2)
    if len(version) != 2:
        raise DataError(f"{what}: the .npy header is cut short")
    try:
        if version == b"\x01\x00":
            shape, fortran, dtype = npformat.read_array_header_1_0(fh)
        elif version == b"\x02\x00":
            shape, fortran, dtype = npformat.read_array_header_2_0(fh)
        else:
            raise DataError(
                f"{what}: .npy format version {version[0]}.{version[1]} is not read (1.0 and 2.0 are; "
                "3.0 only stores structured arrays with non-Latin-1 field names, which are refused anyway)"
            )
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure of an untrusted header
        raise DataError(f"{what}: damaged .npy header ({one_line(str(exc))[:200] or type(exc).__name__})") from None
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise DataError(f"{what}: damaged .npy header (shape {shape!r})")
    return shape, dtype, bool(fortran)


def _open_npz(path: str, key: str | None, max_pixels: int | None) -> ArraySource:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz (zip) file: {one_line(str(exc))[:200]}") from None
    with archive:
        members: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            if info.filename.endswith(".npy") and not info.is_dir():
                name = info.filename[: -len(".npy")]
                if name in members:
                    raise DataError(f"{path}: the .npz holds two arrays named {printable(name)!r}; it is damaged or crafted")
                members[name] = info
        if not members:
            raise DataError(f"{path}: the .npz holds no arrays (no .npy members)")
        info = members[_choose_key(path, key, list(members))]
        name = info.filename[: -len(".npy")]
        what = f"{path} (key {printable(name)!r})"
        if info.flag_bits & 0x1:
            raise DataError(f"{what}: the member is encrypted")
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as fh:
                start = _member_data_start(fh, info, what)
                fh.seek(start)
                shape, dtype, fortran = _read_header(_Bounded(fh, info.file_size), what)  # type: ignore[arg-type]
                offset = fh.tell()
            source = ArraySource(path, name, shape, dtype, fortran, offset)
            _check(source, start + info.file_size - offset, max_pixels)
            return source
        try:
            with archive.open(info) as stream:
                shape, dtype, fortran = _read_header(stream, what)
                header = stream.tell() if stream.seekable() else None
        except DataError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError, OSError) as exc:
            raise DataError(f"{what}: cannot decompress the member ({one_line(str(exc))[:200] or type(exc).__name__})") from None
        source = ArraySource(path, name, shape, dtype, fortran, None, info)
        # What the zip says the member holds; the stream itself is checked while it is read.
        _check(source, info.file_size - (header or 0), max_pixels)
        return source


def _choose_key(path: str, key: str | None, keys: list[str]) -> str:
    keys = sorted(keys)
    if key is not None:
        if key in keys:
            return key
        raise DataError(f"{path}: no array named {printable(key)!r} in it; its keys: {_shown(keys)}")
    if len(keys) == 1:
        return keys[0]
    raise DataError(f"{path} holds {len(keys)} arrays ({_shown(keys)}): choose one with --set signal.key=NAME")


def _shown(keys: list[str]) -> str:
    shown = ", ".join(printable(k)[:60] for k in keys[:SHOWN_KEYS])
    return shown + (f", ... and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")


def _member_data_start(fh: IO[bytes], info: zipfile.ZipInfo, what: str) -> int:
    """Where a stored member's bytes start: after its local file header (read from the file,
    since the central directory's copy of the name and extra field lengths may differ)."""
    size = os.fstat(fh.fileno()).st_size
    fh.seek(info.header_offset)
    raw = fh.read(_ZIP_LOCAL_HEADER.size)
    if len(raw) != _ZIP_LOCAL_HEADER.size or raw[:4] != _ZIP_LOCAL_MAGIC:
        raise DataError(f"{what}: the zip member's local header is missing or damaged")
    fields = _ZIP_LOCAL_HEADER.unpack(raw)
    name_length, extra_length = fields[9], fields[10]
    start = info.header_offset + _ZIP_LOCAL_HEADER.size + name_length + extra_length
    if info.compress_size != info.file_size or start + info.file_size > size:
        raise DataError(
            f"{what}: the zip member claims {info.file_size:,} bytes from offset {start:,}, "
            f"but the file holds {size:,} bytes (truncated or damaged)"
        )
    return start


class _Bounded:
    """A file read as if it ended ``limit`` bytes after the current position (a zip member)."""

    def __init__(self, fh: IO[bytes], limit: int) -> None:
        self._fh, self._left = fh, limit

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._fh.read(n)
        self._left -= len(data)
        return data


def _check(source: ArraySource, available: int, max_pixels: int | None) -> None:
    """Everything the header promises, before anything is allocated."""
    what, shape, dtype = source.what, source.shape, source.dtype
    _check_dtype(what, dtype)
    if len(shape) == 4:
        if not 1 <= shape[3] <= 4:
            if 1 <= shape[1] <= 4:
                raise DataError(
                    f"{what}: shape {shape} looks like (N, C, H, W), channels first; inrkit reads (N, H, W, C), "
                    "channels last: save np.moveaxis(a, 1, -1)"
                )
            raise DataError(f"{what}: shape {shape} has {shape[3]} channels on its last axis; (N, H, W, C) needs 1 to 4")
    elif len(shape) == 3:
        if 1 <= shape[2] <= 4 and shape[1] > shape[2]:  # a width of 1-4 pixels, under the height
            raise DataError(
                f"{what}: shape {shape} looks like one (H, W, C) image; an array data set is (N, H, W, C) "
                "or (N, H, W) gray: save a[None] for a single image"
            )
    else:
        single = " (one gray image? save a[None])" if len(shape) == 2 else ""
        raise DataError(f"{what}: an array of rank {len(shape)}, shape {shape}{single}; expected (N, H, W, C) or (N, H, W)")
    if shape[0] == 0:
        raise DataError(f"{what} holds no images (shape {shape})")
    if 0 in shape:
        raise DataError(f"{what}: its images are empty (shape {shape})")
    check_pixels(source.size, f"{what}: each image", limit=pixel_limit(max_pixels), error=DataError)
    if source.nbytes > available:
        raise DataError(
            f"{what}: its header promises {source.nbytes:,} bytes of {dtype} data (shape {shape}), but the file "
            f"holds {max(available, 0):,}; it is truncated or damaged"
        )


def _check_dtype(what: str, dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise DataError(
            f"{what}: an array of Python objects (dtype {dtype}); inrkit never unpickles data: "
            f"save the pixels as {_ACCEPTED}"
        )
    if dtype.names is not None or dtype.subdtype is not None:
        raise DataError(f"{what}: a structured array (dtype {dtype}); save the pixels as {_ACCEPTED}")
    ok = (dtype.kind == "u" and dtype.itemsize in (1, 2)) or (dtype.kind == "f" and dtype.itemsize in (2, 4, 8))
    if not ok:
        hint = {
            "b": "; save a.astype(np.uint8) * 255",
            "i": "; save a.astype(np.uint8) (8-bit values) or a.astype(np.uint16)",
            "u": "; save a.astype(np.uint8) or a.astype(np.uint16)",
            "c": "; complex pixels have no image meaning",
        }.get(dtype.kind, "")
        raise DataError(f"{what}: pixels of dtype {dtype} are not read; expected {_ACCEPTED}{hint}")


# -- conversion --------------------------------------------------------------------------------
def converted_shape(source: ArraySource, channels: int, max_side: int | None = None) -> tuple[int, int, int, int]:
    """``(N, H', W', C')`` of :func:`to_images`: ``max_side`` applied as
    :func:`~inrkit.images.shrink_to_max_side` does, ``channels`` per pixel."""
    h, w = source.size
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
    return source.count, h, w, channels


def check_memory(source: ArraySource, channels: int, max_side: int | None = None) -> None:
    """Refuse a conversion whose float32 result (and a compressed Fortran-ordered member read
    whole) would not fit in the memory this machine has (``INRKIT_MEMORY_CHECK=0``: no check)."""
    need = count_pixels(converted_shape(source, channels, max_side)) * 4
    if source.offset is None and source.fortran_order:
        need += source.nbytes
    have = available_memory()
    if memory_check_enabled() and have is not None and need > have:
        raise DataError(
            f"{source.what}: {source.count:,} images of {source.size[1]}x{source.size[0]} need {format_bytes(need)} "
            f"as float32, more than the {format_bytes(have)} this machine has available "
            f"(shrink them with --set signal.max_side=..., use fewer, or set {MEMORY_CHECK_ENV}=0)"
        )


def to_images(source: ArraySource, mode: str, max_side: int | None = None) -> np.ndarray:
    """The array's images as float32 ``(N, H', W', C')`` in [0, 1] for channel ``mode`` (``rgb``,
    ``gray`` or ``rgba``, as :func:`~inrkit.images.to_channels` converts an image file), shrunk
    to ``max_side``. Chunk by chunk: float pixels are checked (finite, within [0, 1]) and the
    stored bytes are released as they are converted."""
    channels = {"rgb": 3, "gray": 1, "rgba": 4}[mode]
    check_memory(source, channels, max_side)
    shape = converted_shape(source, channels, max_side)
    out = np.empty(shape, dtype=np.float32)
    per_image = count_pixels(shape[1:]) * 4
    step = max(1, CHUNK_BYTES // max(per_image, 1))
    checker = _FloatCheck(source) if source.dtype.kind == "f" else None
    scratch: dict[str, Any] = {}
    for start, raw in _chunks(source, step):
        if checker is not None:
            checker.update(start, raw)
            if checker.bad:
                continue  # the error counts every chunk: only scan the rest
        if not raw.dtype.isnative:
            raw = raw.astype(raw.dtype.newbyteorder("="))
        if raw.ndim == 3:
            raw = raw[..., None]
        images = to_channels(raw, mode, scratch)
        stop = start + images.shape[0]
        if shape[1:3] == source.size:
            out[start:stop] = images
        else:
            for i in range(images.shape[0]):
                out[start + i] = shrink_to_max_side(images[i], max_side)
    if checker is not None:
        checker.raise_if_bad()
    return out


class _FloatCheck:
    """NaN, infinities and the range of float pixels, counted over all chunks."""

    def __init__(self, source: ArraySource) -> None:
        self.source = source
        self.non_finite = 0
        self.first_non_finite: int | None = None
        self.low, self.high = math.inf, -math.inf
        self.first_outside: int | None = None

    @property
    def bad(self) -> bool:
        return self.first_non_finite is not None or self.first_outside is not None

    def update(self, start: int, raw: np.ndarray) -> None:
        finite = np.isfinite(raw)
        if not finite.all():
            per_item = (~finite).reshape(raw.shape[0], -1).sum(axis=1)
            self.non_finite += int(per_item.sum())
            if self.first_non_finite is None:
                self.first_non_finite = start + int(np.flatnonzero(per_item)[0])
            values = raw[finite]
        else:
            values = raw
        if values.size:
            low, high = float(values.min()), float(values.max())
            self.low, self.high = min(self.low, low), max(self.high, high)
            if self.first_outside is None and (low < 0.0 or high > 1.0):
                flat = raw.reshape(raw.shape[0], -1)
                outside = ((flat < 0) | (flat > 1)).any(axis=1)
                self.first_outside = start + int(np.flatnonzero(outside)[0])

    def raise_if_bad(self) -> None:
        what = self.source.what
        if self.first_non_finite is not None:
            raise DataError(
                f"{what}: {self.non_finite:,} NaN or infinite pixel values, the first in item {self.first_non_finite}; "
                "float pixels must be finite values in [0, 1]"
            )
        if self.first_outside is not None:
            hint = "; it looks like 0-255 values: save (a / 255) or a.astype(np.uint8)" if self.high > 1.0 and self.high <= 255.0 else ""
            raise DataError(
                f"{what}: float pixels range from {self.low:g} to {self.high:g} (the first outside [0, 1] in item "
                f"{self.first_outside}); float images must lie in [0, 1]{hint}"
            )


def _chunks(source: ArraySource, step: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(first item, stored pixels of items first..first+k)`` in order, ``k <= step``."""
    if source.offset is not None:
        yield from _mapped_chunks(source, step)
    else:
        yield from _stream_chunks(source, step)


def _mapped_chunks(source: ArraySource, step: int) -> Iterator[tuple[int, np.ndarray]]:
    assert source.offset is not None
    with open(source.path, "rb") as fh:
        try:
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot memory-map {source.what}: {exc}") from None
    try:
        if os.path.getsize(source.path) < source.offset + source.nbytes:  # changed since the header was read
            raise DataError(f"{source.what}: the file is shorter than its header says; it is truncated")
        array = np.ndarray(source.shape, source.dtype, buffer=mapped, offset=source.offset,
                           order="F" if source.fortran_order else "C")
        per_item = source.nbytes // source.count
        release = getattr(mapped, "madvise", None) if not source.fortran_order else None
        page = mmap.PAGESIZE
        for start in range(0, source.count, step):
            stop = min(start + step, source.count)
            yield start, array[start:stop]
            if release is not None and hasattr(mmap, "MADV_DONTNEED"):
                # Release the converted chunk's pages (they stay in the page cache, not in this
                # process): the stored array is never resident as a whole beside the float32 one.
                first = (source.offset + start * per_item) // page * page
                last = source.offset + stop * per_item
                with contextlib.suppress(OSError, ValueError):
                    release(mmap.MADV_DONTNEED, first, last - first)
        del array
    finally:
        with contextlib.suppress(BufferError):
            mapped.close()


def _stream_chunks(source: ArraySource, step: int) -> Iterator[tuple[int, np.ndarray]]:
    assert source.member is not None
    per_item = source.nbytes // source.count
    try:
        with zipfile.ZipFile(source.path) as archive, archive.open(source.member) as stream:
            _read_header(stream, source.what)
            if source.fortran_order:  # items are not contiguous: read the whole array once
                data = _read_exactly(stream, source.nbytes, source)
                array = np.ndarray(source.shape, source.dtype, buffer=data, order="F")
                for start in range(0, source.count, step):
                    yield start, array[start : start + step]
                return
            for start in range(0, source.count, step):
                stop = min(start + step, source.count)
                data = _read_exactly(stream, (stop - start) * per_item, source)
                yield start, np.frombuffer(data, dtype=source.dtype).reshape((stop - start, *source.shape[1:]))
            stream.read(1)  # at the member's end zipfile checks its CRC-32
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{source.what}: cannot decompress the member ({one_line(str(exc))[:200] or type(exc).__name__})") from None


def _read_exactly(stream: IO[bytes], n: int, source: ArraySource) -> bytearray:
    buffer = bytearray(n)
    view = memoryview(buffer)
    got = 0
    while got < n:
        k = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not k:
            raise DataError(f"{source.what}: the member ends after {got:,} of {n:,} bytes; it is truncated or damaged")
        got += k
    return buffer


def item_names(stem: str, count: int) -> list[str]:
    """``stem-0000`` ... : one name per image, the index zero-padded to the width of ``count - 1``."""
    width = len(str(max(count - 1, 0)))
    return [f"{stem}-{i:0{width}d}" for i in range(count)]
