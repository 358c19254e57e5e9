"""Post-training uniform scalar quantisation of a network's tensors (the rate side of an INR).

Each tensor (each item's slice of a per-item tensor, so that an item decodes alone) becomes
integers ``q`` in ``[-L, L]`` with ``L = 2**(bits-1) - 1`` and a step ``s``: ``w ≈ q * s``. The
step is the one that minimises the tensor's squared error over a grid of clipping ranges, not
``max|w| / L``: clipping a few outliers buys a finer step for the bulk of a bell-shaped layer
(the shared hidden layers are, see ``inrkit analyze weights``). Optionally one step per output
channel (the last axis of inrkit's ``(in, out)`` weights). Complex tensors (WIRE) quantise their
real and imaginary parts with one step.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Bit depths ``--bits`` accepts.
MIN_BITS, MAX_BITS = 2, 16

#: Fractions of ``max|w|`` tried as the clipping range; the one with the least squared error wins.
CLIP_GRID = np.linspace(0.05, 1.0, 96)


@dataclasses.dataclass(frozen=True)
class Quantised:
    """One tensor as integers and step sizes: ``values ≈ codes * steps`` (steps broadcast over the
    last axis when there is one per channel)."""

    codes: np.ndarray  # int32, the tensor's shape (complex: an extra last axis of 2)
    steps: np.ndarray  # float32, shape (1,) or (channels,)
    complex: bool = False

    def dequantise(self) -> np.ndarray:
        values = (self.codes.astype(np.float32) * _broadcast(self.steps, self.codes.ndim, self.complex)).astype(np.float32)
        if self.complex:
            return values[..., 0] + 1j * values[..., 1]
        return values


def levels(bits: int) -> int:
    """The largest code magnitude ``L`` at ``bits`` bits (symmetric: ``2**bits - 1`` levels)."""
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be between {MIN_BITS} and {MAX_BITS} (got {bits})")
    return 2 ** (bits - 1) - 1


def _broadcast(steps: np.ndarray, ndim: int, is_complex: bool) -> np.ndarray:
    if steps.size == 1:
        return steps.reshape(())
    # one step per channel: the last axis of the values (before the complex pair axis)
    shape = [1] * ndim
    shape[ndim - 2 if is_complex else ndim - 1] = steps.size
    return steps.reshape(shape)


def best_step(values: np.ndarray, bits: int) -> float:
    """The step in ``CLIP_GRID * max|values| / L`` with the least squared error of
    ``clip(round(values / step), -L, L) * step``; a float32-representable positive number."""
    top = float(np.max(np.abs(values))) if values.size else 0.0
    if not np.isfinite(top):
        raise ValueError("cannot quantise a tensor with non-finite values")
    limit = levels(bits)
    if top == 0.0 or top * CLIP_GRID[0] / limit < np.finfo(np.float32).tiny:
        return 1.0  # zeros, or values so small that any step rounds them to zero (a float32 step must stay > 0)
    flat = values.reshape(-1).astype(np.float64)
    steps = CLIP_GRID * top / limit
    # (grid, values) at once would be large for big tensors: a loop over 96 candidates is fine.
    errors = [float(np.sum((np.clip(np.rint(flat / s), -limit, limit) * s - flat) ** 2)) for s in steps]
    return float(np.float32(steps[int(np.argmin(errors))]))


def _real_view(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """float32 values, complex ones as a trailing (real, imaginary) axis; and whether they were complex."""
    if np.iscomplexobj(values):
        return np.stack([values.real, values.imag], axis=-1).astype(np.float32), True
    return np.asarray(values, np.float32), False


def choose_steps(values: np.ndarray, bits: int, per_channel: bool = False) -> np.ndarray:
    """The error-minimising step(s) of ``values``: shape ``(1,)``, or ``(channels,)`` with
    ``per_channel`` (each index of the last axis; a vector keeps one step)."""
    real, is_complex = _real_view(values)
    if per_channel and np.ndim(values) >= 2:
        moved = np.moveaxis(real, real.ndim - (2 if is_complex else 1), 0)
        return np.array([best_step(moved[c], bits) for c in range(moved.shape[0])], dtype=np.float32)
    return np.array([best_step(real, bits)], dtype=np.float32)


def quantise(values: np.ndarray, bits: int, per_channel: bool = False, steps: np.ndarray | None = None) -> Quantised:
    """``values`` (real or complex) as codes in ``[-L, L]`` and the error-minimising step(s)
    (:func:`choose_steps`), or the given ``steps`` (quantisation-aware training fixes them)."""
    real, is_complex = _real_view(values)
    limit = levels(bits)
    steps = choose_steps(values, bits, per_channel) if steps is None else np.asarray(steps, np.float32).reshape(-1)
    codes = np.clip(np.rint(real / _broadcast(steps, real.ndim, is_complex)), -limit, limit).astype(np.int32)
    return Quantised(codes, steps, is_complex)
