"""Quality metrics and their summaries.

PSNR on outputs clamped to [0, 1]; SSIM as Wang et al. (Gaussian window sigma 1.5, data range 1,
population covariance) from scikit-image; MS-SSIM as Wang, Simoncelli and Bovik (2003) from
``pytorch-msssim`` (the implementation CompressAI's evaluation uses: five scales with the standard
weights, an 11-pixel Gaussian window of sigma 1.5, data range 1, computed per channel and then
averaged). MS-SSIM is defined only for images whose shorter side is at least
:data:`MS_SSIM_MIN_SIDE` pixels (four halvings of an image must still hold the window); smaller
images and non-image signals report it as not applicable (``None``), never as a number.

A set of items has two PSNR averages, and papers use both: the mean of the per-item PSNRs (the
paper's tables, and inrkit's headline ``psnr_mean``) and the PSNR of the mean squared error
(:func:`psnr_of_mean_mse`: each item's MSE over all its values, items weighted equally). The
second is never above the first (Jensen's inequality) and lower by 0.1-0.6 dB on Kodak-like sets.
Summaries are mean and population standard deviation over items, as the paper's tables report them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import numpy as np

#: Shortest image side (pixels) for which MS-SSIM is defined with 5 scales and an 11-pixel window:
#: ``(11 - 1) * 2**4 + 1``.
MS_SSIM_MIN_SIDE = 161


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


def ms_ssim(reconstruction: np.ndarray, target: np.ndarray) -> float | None:
    """MS-SSIM of ``(H, W, C)`` images in [0, 1]; ``None`` (not applicable) for anything else and
    for images with a side shorter than :data:`MS_SSIM_MIN_SIDE`."""
    if reconstruction.ndim != 3 or target.shape != reconstruction.shape or min(target.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def nchw(arr: np.ndarray) -> torch.Tensor:  # float32: 4-5x faster than float64 on the CPU, equal to ~1e-8
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)

    with torch.no_grad():
        value = _ms_ssim(nchw(np.clip(reconstruction, 0.0, 1.0)), nchw(target), data_range=1.0, size_average=True)
    return float(value)


def psnr_of_mean_mse(psnrs: Iterable[float | None]) -> float | None:
    """The PSNR (dB, values in [0, 1]) of the mean of the items' squared errors, from their PSNRs:
    ``-10 log10(mean_i 10^(-PSNR_i / 10))``. Items without a PSNR are left out; an item with an
    infinite PSNR (a perfect fit) counts as an error of 0; ``None`` when no item has one."""
    errors = [0.0 if v == math.inf else 10.0 ** (-v / 10.0) for v in psnrs if v is not None and not math.isnan(v)]
    if not errors:
        return None
    return psnr_from_mse(math.fsum(errors) / len(errors))


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and population standard deviation of the defined values."""
    defined = [v for v in values if v is not None and math.isfinite(v)]
    if not defined:
        return None, None
    arr = np.asarray(defined, dtype=np.float64)
    return float(arr.mean()), float(arr.std())
