"""Image helpers every image-like signal plugin shares: reading, converting, resizing, writing.

Pillow (imageio's default for PNG) reads 16-bit colour PNGs as 8-bit and cannot write them, so
16-bit PNGs go through pypng; everything else goes through imageio. Writes are atomic (temporary
file, then rename), so an interrupted write never leaves half an image behind.

Conversion rules, applied explicitly rather than left to the decoder (:func:`to_unit_float`,
:func:`to_channels`): 8-bit data is divided by 255, 16-bit by 65535, floats are clipped to
[0, 1]; RGBA and gray+alpha are composited over white unless alpha is kept as a channel.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inrkit.errors import DataError

#: Suffixes of the files a folder of images is searched for.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm", ".pnm"})
#: Channel layouts :func:`to_channels` produces.
CHANNEL_MODES = ("rgb", "gray", "rgba")
#: Suffixes :func:`write_image` writes (8-bit; 16-bit is PNG only).
WRITABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG's IHDR chunk, or ``None`` for anything that is not a PNG."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(25)
    except OSError:
        return None
    if len(head) < 25 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24]


def read_image(path: str | Path) -> np.ndarray:
    """The pixels of an image file in their stored dtype (uint16 for 16-bit PNGs)."""
    path = Path(path)
    if _png_bit_depth(path) == 16:
        import png

        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        planes = info["planes"]
        return np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    import imageio.v3 as iio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # imageio's legacy plugin notices
        return np.asarray(iio.imread(path))


def read_pixels(source: str | Path) -> np.ndarray:
    """An image file's pixels in their stored dtype, ``(H, W)`` or ``(H, W, C)``; the first frame
    of a multi-frame file. Anything unreadable is a :class:`~inrkit.errors.DataError` naming it."""
    try:
        arr = read_image(source)
    except Exception as exc:  # noqa: BLE001 - every decoder failure is the file's fault
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read image {source}: {reason}") from None
    if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] not in (1, 2, 3, 4)):
        arr = arr[0]  # multi-frame file: first frame
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise DataError(f"cannot use image {source}: unexpected array shape {arr.shape}")
    return arr


def atomic_write(path: Path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` (same suffix), then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_image(path: str | Path, values: np.ndarray, bit_depth: int = 8) -> Path:
    """Write ``(H, W, C)`` values in [0, 1] to ``path`` (format from its suffix; 16-bit: PNG only)."""
    path = Path(path)
    scale, dtype = (65535, np.uint16) if bit_depth == 16 else (255, np.uint8)
    pixels = np.round(np.clip(values, 0.0, 1.0) * scale).astype(dtype)
    if bit_depth == 16:
        if path.suffix.lower() != ".png":
            raise ValueError("16-bit images are written as PNG")
        import png

        h, w, c = pixels.shape
        writer = png.Writer(width=w, height=h, bitdepth=16, greyscale=c in (1, 2), alpha=c in (2, 4))

        def write16(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                writer.write(fh, pixels.reshape(h, w * c).tolist())

        return atomic_write(path, write16)
    import imageio.v3 as iio

    if pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    return atomic_write(path, lambda tmp: iio.imwrite(tmp, pixels, extension=path.suffix.lower()))


def write_png(path: str | Path, values: np.ndarray, bit_depth: int = 8) -> Path:
    """Write ``(H, W, C)`` values in [0, 1] as an 8- or 16-bit PNG (one channel: grayscale)."""
    return write_image(Path(path), values, bit_depth)


def to_unit_float(arr: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Pixels in their stored dtype to float32 in [0, 1]; records ``meta["bit_depth"]`` (8 or 16)."""
    if arr.dtype == np.uint8:
        meta["bit_depth"] = 8
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16 or (np.issubdtype(arr.dtype, np.integer) and arr.max(initial=0) > 255):
        meta["bit_depth"] = 16
        return np.clip(arr.astype(np.float32) / 65535.0, 0.0, 1.0)
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
        meta["bit_depth"] = 8
        return arr.astype(np.float32) / (1.0 if arr.dtype == bool else 255.0)
    meta["bit_depth"] = 8
    arr = arr.astype(np.float32)
    if np.nanmin(arr) < 0.0 or np.nanmax(arr) > 1.0:
        warnings.warn("float image values outside [0, 1] were clipped", RuntimeWarning, stacklevel=3)
    return np.clip(np.nan_to_num(arr), 0.0, 1.0)


def to_channels(arr: np.ndarray, mode: str, meta: dict[str, Any]) -> np.ndarray:
    """``(H, W[, C])`` in the source dtype to ``(H, W, C')`` float32 in [0, 1] for ``mode``
    (``rgb``, ``gray`` or ``rgba``); alpha is composited over white unless kept (``rgba``)."""
    data = to_unit_float(arr, meta)
    if data.ndim == 2:
        data = data[..., None]
    color, alpha = (data[..., :-1], data[..., -1:]) if data.shape[-1] in (2, 4) else (data, None)
    if color.shape[-1] == 1 and mode in ("rgb", "rgba"):
        color = np.repeat(color, 3, axis=-1)
    if mode == "rgba":
        alpha = np.ones_like(color[..., :1]) if alpha is None else alpha
        out = np.concatenate([color, alpha], axis=-1)
    else:
        if alpha is not None:
            color = color * alpha + (1.0 - alpha)  # over white
        if mode == "gray" and color.shape[-1] == 3:
            color = color @ np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)[:, None]
        out = color
    return np.ascontiguousarray(out, dtype=np.float32)


def resize_to(data: np.ndarray, size: tuple[int, ...], order: int = 1) -> np.ndarray:
    """Resize ``(H, W, C)`` in [0, 1] to ``size`` (``(H', W')``), antialiased when shrinking."""
    from skimage.transform import resize

    out = resize(data, size, order=order, anti_aliasing=True, preserve_range=True, mode="reflect")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def shrink_to_max_side(data: np.ndarray, max_side: int | None) -> np.ndarray:
    """Shrink (never enlarge) so the longer side is at most ``max_side`` pixels."""
    h, w = data.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return data
    scale = max_side / max(h, w)
    return resize_to(data, (max(1, round(h * scale)), max(1, round(w * scale))))
