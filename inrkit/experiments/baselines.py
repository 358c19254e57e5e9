"""Image codec baselines (JPEG, WebP, AVIF through Pillow) measured like an INR.

The same images an INR run fits (its signal's items: same resize, same colour, 8-bit values) are
encoded at a quality, decoded again, and scored with inrkit's own PSNR, SSIM and MS-SSIM. The rate
is the encoded files' real size: bits per pixel = 8 x the bytes of every image / every image's
pixels. PSNR, SSIM and MS-SSIM are means over the images, as a run reports them, beside the PSNR of
the images' mean squared error (``psnr_of_mean_mse``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from inrkit.errors import ConfigError
from inrkit.images import to_pixels
from inrkit.metrics import ms_ssim, psnr, psnr_of_mean_mse, ssim

#: Codec name -> (Pillow format, default qualities swept by ``inrkit rd``).
CODECS: dict[str, tuple[str, tuple[int, ...]]] = {
    "jpeg": ("JPEG", (5, 10, 20, 30, 50, 70, 85, 95)),
    "webp": ("WEBP", (5, 10, 20, 30, 50, 70, 85, 95)),
    "avif": ("AVIF", (10, 20, 30, 45, 60, 75, 90)),
}


def check_codecs(names: Sequence[str]) -> list[str]:
    """Known codec names that this Pillow can write; a :class:`~inrkit.errors.ConfigError` otherwise."""
    from PIL import features

    out = []
    for name in names:
        key = name.strip().lower()
        if key not in CODECS:
            raise ConfigError(f"unknown codec {name!r}; known: {', '.join(CODECS)}")
        if not features.check(key if key != "jpeg" else "jpg"):
            raise ConfigError(f"this Pillow cannot write {key.upper()} (Pillow {features.version('pil')}); upgrade Pillow or leave {key} out")
        out.append(key)
    return out


def encode_decode(pixels: np.ndarray, codec: str, quality: int) -> tuple[int, np.ndarray]:
    """``pixels`` (8-bit, ``(H, W, 1|3)``) through ``codec`` at ``quality``: the encoded size in
    bytes and the decoded image in [0, 1]. Pillow's defaults otherwise (JPEG: 4:2:0 chroma)."""
    from PIL import Image

    fmt = CODECS[codec][0]
    mode_image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    mode_image.save(buffer, format=fmt, quality=int(quality))
    size = buffer.tell()
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        back = np.asarray(decoded.convert("L" if pixels.shape[-1] == 1 else "RGB"), dtype=np.float32) / 255.0
    return size, back.reshape(pixels.shape)


def codec_point(images: Sequence[np.ndarray], codec: str, quality: int) -> dict[str, Any]:
    """One rate-distortion point of ``codec`` at ``quality`` over ``images`` (each in [0, 1])."""
    sizes: list[int] = []
    psnrs: list[float] = []
    ssims: list[float | None] = []
    ms_ssims: list[float | None] = []
    pixels = 0
    for image in images:
        if image.ndim != 3 or image.shape[-1] not in (1, 3):
            raise ConfigError(f"codecs compare 2-D gray or RGB images; got an item of shape {image.shape}")
        pixels8 = to_pixels(image)
        target = pixels8.astype(np.float32) / 255.0
        size, back = encode_decode(pixels8, codec, quality)
        sizes.append(size)
        psnrs.append(psnr(back, target))
        ssims.append(ssim(back, target))
        ms_ssims.append(ms_ssim(back, target))
        pixels += image.shape[0] * image.shape[1]
    finite = [p for p in psnrs if np.isfinite(p)]
    scored = [s for s in ssims if s is not None]  # SSIM needs images of 11 pixels or more
    multi = [s for s in ms_ssims if s is not None]  # MS-SSIM needs 161 pixels: all or none counted
    return {
        "method": codec, "setting": f"q{quality}", "quality": quality, "bytes": int(sum(sizes)), "pixels": pixels,
        "bpp": 8 * sum(sizes) / pixels, "psnr": float(np.mean(finite)) if finite else None,
        "psnr_of_mean_mse": psnr_of_mean_mse(psnrs),
        "ssim": float(np.mean(scored)) if scored else None,
        "ms_ssim": float(np.mean(multi)) if multi and len(multi) == len(ms_ssims) else None, "item_bytes": sizes,
    }
