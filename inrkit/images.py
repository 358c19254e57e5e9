"""Writing arrays in [0, 1] as image files (used by the CLI's ``decode`` and by signal plugins)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_png(path: str | Path, values: np.ndarray, bit_depth: int = 8) -> Path:
    """Write ``(H, W, C)`` values in [0, 1] as an 8- or 16-bit PNG (one channel: grayscale)."""
    import imageio.v3 as iio

    path = Path(path)
    scale, dtype = (65535, np.uint16) if bit_depth == 16 else (255, np.uint8)
    pixels = np.round(np.clip(values, 0.0, 1.0) * scale).astype(dtype)
    if pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, pixels, extension=".png")
    return path
