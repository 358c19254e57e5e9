"""Quality metrics and their summaries.

PSNR on outputs clamped to [0, 1]; SSIM as Wang et al. (Gaussian window sigma 1.5, data range 1,
population covariance) from scikit-image. Summaries are mean and population standard deviation
over items, as the paper's tables report them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np


def psnr(reconstruction: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for values in [0, 1]; ``inf`` for a perfect match."""
    mse = float(np.mean((np.clip(reconstruction, 0.0, 1.0).astype(np.float64) - target.astype(np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def psnr_from_mse(mse: float) -> float:
    return math.inf if mse <= 0.0 else 10.0 * math.log10(1.0 / mse)


def ssim(reconstruction: np.ndarray, target: np.ndarray) -> float | None:
    """SSIM of ``(H, W, C)`` images in [0, 1]; ``None`` when the image is smaller than the window."""
    from skimage.metrics import structural_similarity

    if reconstruction.ndim != 3 or min(target.shape[:2]) < 11:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = structural_similarity(
            np.clip(reconstruction, 0.0, 1.0).astype(np.float64),
            target.astype(np.float64),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
    return float(value)


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and population standard deviation of the defined values."""
    defined = [v for v in values if v is not None and math.isfinite(v)]
    if not defined:
        return None, None
    arr = np.asarray(defined, dtype=np.float64)
    return float(arr.mean()), float(arr.std())
