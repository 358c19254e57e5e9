"""Entropy coding of quantised tensors with ``constriction``'s range coder.

Each block of integer codes is coded under the cheapest of three models, measured by the real
coded size including the model's own parameters: a quantised Laplace or a quantised Gaussian
with the block's fitted mean and scale (two float32 each: the hidden layers are bell-shaped),
or the block's own histogram (stored as counts: it pays off for large blocks only). A block
whose codes are all equal costs its value alone. Everything a decoder needs is in the bytes
:func:`encode_block` returns; nothing is an estimate.

Block layout (little endian): kind ``u8``; ``lo``, ``hi`` ``i32`` (the code range); then for
Laplace/Gaussian ``mean``, ``scale`` ``f32``; for a histogram ``hi - lo + 1`` counts ``u32``;
then the number of 32-bit words ``u32`` and the words.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

import numpy as np

from inrkit.errors import CheckpointError

CONSTANT, LAPLACE, GAUSSIAN, HISTOGRAM = 0, 1, 2, 3
MODEL_NAMES = {CONSTANT: "constant", LAPLACE: "laplace", GAUSSIAN: "gaussian", HISTOGRAM: "histogram"}

#: Codes are at most 16-bit (``--bits`` up to 16): a block's range lies within ``±MAX_CODE``.
MAX_CODE = 2**15 - 1

#: A histogram is tried only for blocks with at most this many distinct code values.
MAX_HISTOGRAM_SYMBOLS = 1 << 17

_HEAD = struct.Struct("<Bii")
_PAIR = struct.Struct("<ff")
_WORDS = struct.Struct("<I")


def _coder() -> Any:
    import constriction

    return constriction


def _parametric(kind: int, lo: int, hi: int, mean: float, scale: float) -> Any:
    model = _coder().stream.model
    if kind == LAPLACE:
        return model.QuantizedLaplace(lo, hi, mean, scale)
    return model.QuantizedGaussian(lo, hi, mean, scale)


def _histogram(counts: np.ndarray) -> Any:
    return _coder().stream.model.Categorical(counts.astype(np.float64), perfect=False)


def _encode(symbols: np.ndarray, model: Any) -> np.ndarray:
    encoder = _coder().stream.queue.RangeEncoder()
    encoder.encode(symbols, model)
    return np.asarray(encoder.get_compressed(), dtype=np.uint32)


def _fitted(codes: np.ndarray, kind: int) -> tuple[float, float]:
    """Mean and scale of a Laplace (mean absolute deviation) or Gaussian (standard deviation) fit,
    rounded to float32 as they are stored, so that coder and decoder use the very same model."""
    x = codes.astype(np.float64)
    mean = float(np.mean(x))
    spread = float(np.mean(np.abs(x - mean))) if kind == LAPLACE else float(np.std(x))
    return float(np.float32(mean)), float(np.float32(max(spread, 0.05)))


def encode_block(codes: np.ndarray) -> tuple[bytes, str]:
    """``codes`` (any shape, integers) as one self-describing coded block, and the model's name."""
    flat = np.ascontiguousarray(codes, dtype=np.int32).reshape(-1)
    if flat.size == 0:
        return _HEAD.pack(CONSTANT, 0, 0), MODEL_NAMES[CONSTANT]
    lo, hi = int(flat.min()), int(flat.max())
    if lo == hi:
        return _HEAD.pack(CONSTANT, lo, hi), MODEL_NAMES[CONSTANT]
    candidates: list[tuple[bytes, int]] = []
    for kind in (LAPLACE, GAUSSIAN):
        mean, scale = _fitted(flat, kind)
        words = _encode(flat, _parametric(kind, lo, hi, mean, scale))
        candidates.append((_HEAD.pack(kind, lo, hi) + _PAIR.pack(mean, scale) + _WORDS.pack(words.size) + words.tobytes(), kind))
    if hi - lo + 1 <= MAX_HISTOGRAM_SYMBOLS and (hi - lo + 1) * 4 < min(len(c) for c, _ in candidates):
        counts = np.bincount(flat - lo, minlength=hi - lo + 1).astype(np.uint32)
        words = _encode(flat - lo, _histogram(counts))
        candidates.append((_HEAD.pack(HISTOGRAM, lo, hi) + counts.tobytes() + _WORDS.pack(words.size) + words.tobytes(), HISTOGRAM))
    best, kind = min(candidates, key=lambda c: len(c[0]))
    return best, MODEL_NAMES[kind]


def decode_block(data: bytes | memoryview, offset: int, count: int, where: str) -> tuple[np.ndarray, int]:
    """The ``count`` codes of the block at ``offset`` in ``data`` (int32) and the offset after it.

    ``where`` names the file and tensor in a :class:`~inrkit.errors.CheckpointError` when the
    block is malformed (truncated, an unknown model, an impossible range).
    """
    view = memoryview(data)

    def take(n: int) -> memoryview:
        nonlocal offset
        if offset + n > len(view):
            raise CheckpointError(f"{where}: the coded data ends early (truncated or corrupted)")
        chunk = view[offset : offset + n]
        offset += n
        return chunk

    kind, lo, hi = _HEAD.unpack(take(_HEAD.size))
    if kind not in MODEL_NAMES or hi < lo or lo < -MAX_CODE or hi > MAX_CODE:
        raise CheckpointError(f"{where}: unknown entropy model {kind} or code range [{lo}, {hi}] (corrupted data)")
    if kind == CONSTANT:
        return np.full(count, lo, dtype=np.int32), offset
    if kind == HISTOGRAM:
        counts = np.frombuffer(take(4 * (hi - lo + 1)), dtype="<u4").astype(np.float64)
        if not counts.any():
            raise CheckpointError(f"{where}: an empty histogram (corrupted data)")
        make_model = functools.partial(_histogram, counts)
    else:
        mean, scale = _PAIR.unpack(take(_PAIR.size))
        if not (np.isfinite(mean) and np.isfinite(scale) and 0 < scale < 1e9 and abs(mean) <= MAX_CODE):
            raise CheckpointError(f"{where}: invalid entropy model parameters (corrupted data)")
        make_model = functools.partial(_parametric, kind, lo, hi, mean, scale)
    (n_words,) = _WORDS.unpack(take(_WORDS.size))
    words = np.frombuffer(take(4 * n_words), dtype="<u4").astype(np.uint32)
    try:
        model = make_model()  # inside the try: the coder may refuse (panic on) corrupted parameters
        decoder = _coder().stream.queue.RangeDecoder(words)
        symbols = np.asarray(decoder.decode(model, count), dtype=np.int32)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the coder's own error on bad data; a Rust panic is a BaseException
        raise CheckpointError(f"{where}: the coded data cannot be decoded ({str(exc)[:200]}); the file is corrupted") from None
    if kind == HISTOGRAM:
        symbols = symbols + lo
    return symbols, offset
