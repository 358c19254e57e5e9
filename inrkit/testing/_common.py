"""What the contract kits share: small smooth test images and the devices to check on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def smooth_test_image(size: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth RGB image in [0, 1] (sums of sinusoids) that any working INR can fit quickly."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    planes = []
    for _ in range(3):
        f = rng.uniform(0.5, 3.0, size=(3, 2))
        p = rng.uniform(0, 2 * np.pi, size=3)
        v = sum(np.sin(2 * np.pi * (f[k, 0] * x + f[k, 1] * y) + p[k]) for k in range(3))
        planes.append((v - v.min()) / (v.max() - v.min()))
    return np.stack(planes, axis=-1).astype(np.float32)


def write_test_images(folder: Path, count: int = 2, size: int = 32) -> list[Path]:
    """``count`` smooth 8-bit PNGs in ``folder`` (created), for fits through the whole pipeline."""
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"smooth{seed}.png" for seed in range(count)]
    for seed, path in enumerate(paths):
        iio.imwrite(path, np.round(smooth_test_image(size, seed=seed) * 255).astype(np.uint8))
    return paths


def devices() -> Sequence[str]:
    """``cpu``, and ``cuda`` when this machine has a GPU."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
