"""Reading and writing image files, 16-bit PNG included.

Pillow (imageio's default for PNG) reads 16-bit colour PNGs as 8-bit and cannot write them, so
16-bit PNGs go through pypng; everything else goes through imageio. Writes are atomic (temporary
file, then rename), so an interrupted write never leaves half an image behind.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

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


def atomic_write(path: Path, write) -> Path:  # type: ignore[no-untyped-def]
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
