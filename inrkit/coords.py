"""Coordinate grids and the value range conventions shared by training and decoding.

Coordinates are pixel centres in [-1, 1] per axis, so an item rendered on a finer grid samples
the same continuous function. Targets are mapped from [0, 1] to [-1, 1] for training, and
network outputs back with :func:`to_unit`. Research code that trains an inrkit model in its own
loop uses the same three functions::

    coords = inrkit.coords.grid((64, 64))          # (4096, 2), row-major like the image
    target = inrkit.coords.to_signed(image)        # (64, 64, 3) in [0, 1] -> [-1, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def axes(shape: Sequence[int], device: torch.device | str | None = None) -> list[torch.Tensor]:
    """Per axis of ``shape``, the pixel-centre coordinates in [-1, 1] (what :func:`grid` combines)."""
    return [(2.0 * torch.arange(int(n), dtype=torch.float32, device=device) + 1.0) / int(n) - 1.0 for n in shape]


def grid(shape: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """``(prod(shape), len(shape))`` pixel-centre coordinates in [-1, 1], row-major like the data.

    ``grid((H, W))[i * W + j]`` is the centre of pixel ``(i, j)``; ``.expand(N, -1, -1)`` gives
    the ``(N, P, 2)`` input of an N-item model.
    """
    mesh = torch.meshgrid(*axes(shape, device), indexing="ij")
    return torch.stack(mesh, dim=-1).reshape(-1, len(shape))


def to_signed(values: np.ndarray) -> torch.Tensor:
    """Values in [0, 1] as a float32 tensor in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)) * 2.0 - 1.0


def to_unit(values: torch.Tensor) -> torch.Tensor:
    """Network outputs in about [-1, 1] back to [0, 1], clamped (as PSNR is measured)."""
    return ((values + 1.0) * 0.5).clamp_(0.0, 1.0)
