"""Image helpers every image-like signal plugin shares: reading, converting, resizing, writing.

Pillow (imageio's default for PNG) reads 16-bit colour PNGs as 8-bit and cannot write them, so
16-bit PNGs go through pypng; everything else goes through imageio. Writes are atomic
(:func:`inrkit.files.atomic_write`, also importable from here for signal plugins), so an
interrupted write never leaves half an image behind.

Reading is defensive, since image files are untrusted: only regular files are opened; every
reader's pixel count is checked against one limit (:func:`inrkit.limits.pixel_limit`) from the
file's header, before anything is decoded; only the first frame of a multi-frame file is decoded;
colour spaces other than gray, RGB and their alpha variants (CMYK and YCCK JPEGs, palette, LAB,
HSV TIFFs ...) are converted to RGB explicitly; a video or audio file, and a float image without a
single finite value, are refused.

Conversion rules, applied explicitly rather than left to the decoder (:func:`to_unit_float`,
:func:`to_channels`): 8-bit data is divided by 255, 16-bit by 65535, floats are clipped to
[0, 1]; RGBA and gray+alpha are composited over white unless alpha is kept as a channel.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import io
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from inrkit.errors import DataError, InrkitError, one_line
from inrkit.files import atomic_write as atomic_write  # re-exported: signal plugins write through it
from inrkit.limits import check_pixels, check_regular_file, pixel_limit

T = TypeVar("T")

#: Suffixes of the files a folder of images is searched for.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm", ".pnm"})
#: Channel layouts :func:`to_channels` produces.
CHANNEL_MODES = ("rgb", "gray", "rgba")
#: Suffixes :func:`write_image` writes (8-bit; 16-bit is PNG only).
WRITABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: Pillow modes imageio returns as inrkit expects them (gray, RGB, alpha, 16-bit, float).
_DIRECT_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
#: Pillow modes converted here, and to what.
_CONVERTED_MODES = {"CMYK": "RGB", "YCbCr": "RGB", "HSV": "RGB", "RGBX": "RGB", "RGBa": "RGBA", "La": "LA", "PA": "RGBA", "LAB": "RGB"}
#: TIFF photometric interpretations read as stored: MINISBLACK and RGB.
_DIRECT_TIFF = (1, 2)


def _head(path: Path, n: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _png_header(path: Path) -> tuple[int, int, int] | None:
    """``(width, height, bit depth)`` from a PNG's IHDR chunk, or ``None`` for anything else."""
    try:
        head = _head(path, 26)
    except OSError:
        return None
    if len(head) < 25 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), head[24]


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG's IHDR chunk, or ``None`` for anything that is not a PNG."""
    header = _png_header(path)
    return None if header is None else header[2]


def _check_size(path: Path, height: int, width: int, limit: int) -> None:
    if height <= 0 or width <= 0:
        raise DataError(f"cannot read image {path}: its header gives a size of {width}x{height}")
    check_pixels((height, width), f"image {path}", limit=limit, error=DataError)


class _PillowLimitOff:
    """Pillow's own decompression-bomb check off while any read is under way: inrkit checked the
    size against its limit from the header already, and Pillow's (a warning from 89 and an error
    from 179 megapixels) must neither warn below inrkit's limit nor refuse what it allows.
    Counted under a lock, so that reads in several threads (:func:`read_in_threads`) restore
    Pillow's setting only when the last one ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers = 0
        self._before: int | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        from PIL import Image

        with self._lock:
            if self._readers == 0:
                self._before = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
            self._readers += 1
        try:
            yield
        finally:
            with self._lock:
                self._readers -= 1
                if self._readers == 0:
                    Image.MAX_IMAGE_PIXELS = self._before


_pillow_unlimited = _PillowLimitOff()


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """The pixels of an image file's first frame in their stored dtype (uint16 for 16-bit PNGs).

    The size is checked against the pixel limit (``max_pixels``, else
    :func:`~inrkit.limits.pixel_limit`) from the header before anything is decoded.
    """
    path = Path(path)
    check_regular_file(path, "image")
    limit = pixel_limit(max_pixels)
    png = _png_header(path)
    if png is not None:
        width, height, depth = png
        _check_size(path, height, width, limit)
        if depth == 16:
            import png as pypng

            with open(path, "rb") as fh:  # pypng leaves a file it opened itself open
                width, height, rows, info = pypng.Reader(file=fh).asDirect()
                planes = info["planes"]
                return np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    with _pillow_unlimited():
        if _head(path, 4) in _TIFF_SIGNATURES:
            return _read_tiff(path, limit)
        return _read_other(path, limit)


def _imageio_first_frame(path: Path, **kwargs: Any) -> np.ndarray:
    import imageio.v3 as iio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # imageio's legacy plugin notices
        return np.asarray(iio.imread(path, index=0, **kwargs))


def _read_tiff(path: Path, limit: int) -> np.ndarray:
    """TIFFs through tifffile (floats, 16-bit colour), except colour spaces it returns raw."""
    try:
        import tifffile
    except ImportError:  # pragma: no cover - scikit-image brings it; Pillow reads most TIFFs
        return _read_other(path, limit)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        _check_size(path, int(page.imagelength), int(page.imagewidth), limit)
        photometric = int(page.photometric)
    if photometric in _DIRECT_TIFF:
        return _imageio_first_frame(path, plugin="tifffile")
    converted = _read_with_pillow(path, limit)  # palette, CMYK, LAB, inverted gray, ...
    if converted is None:
        raise DataError(
            f"cannot read image {path}: its colour space (TIFF photometric {photometric}) is not supported; "
            "convert it to gray or RGB"
        )
    return converted


def _read_with_pillow(path: Path, limit: int) -> np.ndarray | None:
    """The first frame through Pillow, converted to gray, RGB or RGBA as its mode requires;
    ``None`` when Pillow does not know the format."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        return None
    with image:
        width, height = image.size
        _check_size(path, height, width, limit)
        mode = image.mode
        if mode in _DIRECT_MODES:
            image.load()
            if mode == "P":
                return np.asarray(image.convert("RGBA" if "transparency" in image.info else "RGB"))
            return np.asarray(image)
        target = _CONVERTED_MODES.get(mode)
        if target is None:
            raise DataError(f"cannot read image {path}: Pillow mode {mode!r} is not supported; convert it to gray or RGB")
        return np.asarray(_convert(image, mode, target))


def _convert(image: Any, mode: str, target: str) -> Any:
    """Pillow image to ``target``: through its ICC profile or a colour-managed transform where
    one exists (CMYK with a profile, LAB), else Pillow's conversion."""
    from PIL import ImageCms

    if mode == "LAB":
        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        return ImageCms.applyTransform(image, transform)
    icc = image.info.get("icc_profile")
    if mode == "CMYK" and icc:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # an unusable profile: Pillow's plain conversion below
    return image.convert(target)


def _read_other(path: Path, limit: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            mode = image.mode
            width, height = image.size
    except UnidentifiedImageError:
        mode = None
    if mode is not None:
        _check_size(path, height, width, limit)
        if mode in _DIRECT_MODES:
            return _imageio_first_frame(path)  # as inrkit always read them
        converted = _read_with_pillow(path, limit)
        assert converted is not None
        return converted
    # Neither PNG, TIFF nor a format Pillow knows: another imageio plugin may read it, but a video
    # or audio container is refused rather than reduced to its first frame.
    if _is_media_container(path):
        raise DataError(f"{path} is a video or audio file, not a still image; fit its frames with --signal video")
    import imageio.v3 as iio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        shape = tuple(iio.improps(path, index=0).shape)
    if len(shape) < 2 or 0 in shape:
        raise DataError(f"cannot read image {path}: not an image format inrkit reads, or a damaged file")
    _check_size(path, int(shape[0]), int(shape[1]), limit)
    return _imageio_first_frame(path)


def _is_media_container(path: Path) -> bool:
    """Whether FFmpeg sees a video (more than one frame) or audio container in ``path``; FFmpeg's
    image demuxers (``image2``, ``*_pipe``), which take almost any file, do not count."""
    try:
        import av

        with av.open(str(path)) as container:
            name = str(container.format.name)
            if "image2" in name or name.endswith("_pipe"):
                return False
            streams = list(container.streams)
            return any(s.type == "audio" for s in streams) or any(s.type == "video" and s.frames != 1 for s in streams)
    except Exception:  # noqa: BLE001 - FFmpeg cannot open it: not a video either
        return False


def read_pixels(source: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """An image file's pixels in their stored dtype, ``(H, W)`` or ``(H, W, C)``; the first frame
    of a multi-frame file. Anything unreadable is a :class:`~inrkit.errors.DataError` naming it."""
    try:
        arr = read_image(source, max_pixels)
    except InrkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - every decoder failure is the file's fault
        reason = one_line(str(exc)) if str(exc) else type(exc).__name__
        raise DataError(f"cannot read image {source}: {reason[:300]}") from None
    if arr.size == 0:  # a truncated file some decoders read as no frames at all
        raise DataError(f"cannot use image {source}: it holds no pixels (array shape {arr.shape})")
    if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] not in (1, 2, 3, 4)):
        arr = arr[0]  # multi-frame file: first frame
    if arr.ndim not in (2, 3):
        raise DataError(f"cannot use image {source}: unexpected array shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"cannot use image {source}: pixels of type {arr.dtype} (complex or not numbers)")
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.any():
            raise DataError(f"cannot use image {source}: no pixel has a finite value (all NaN or infinite)")
        if not finite.all():
            warnings.warn(
                f"{source}: {int((~finite).sum()):,} NaN or infinite values are read as 0 (or 1 for +inf)",
                RuntimeWarning, stacklevel=2,
            )
    return arr


def to_pixels(values: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Values in [0, 1] as 8-bit (``uint8``) or 16-bit (``uint16``) pixels, rounded to nearest."""
    scale, dtype = (65535, np.uint16) if bit_depth == 16 else (255, np.uint8)
    return np.round(np.clip(values, 0.0, 1.0) * scale).astype(dtype)


def write_image(path: str | Path, values: np.ndarray, bit_depth: int = 8) -> Path:
    """Write ``(H, W, C)`` values in [0, 1] to ``path`` (format from its suffix; 16-bit: PNG only)."""
    path = Path(path)
    pixels = to_pixels(values, bit_depth)
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


#: Whether :func:`read_in_threads` shows a progress bar (set by :func:`loading_progress`).
_SHOW_PROGRESS: contextvars.ContextVar[bool] = contextvars.ContextVar("inrkit_loading_progress", default=False)

#: Fewer files than this load without a bar: it would only flash.
PROGRESS_MIN_FILES = 16


@contextlib.contextmanager
def loading_progress(show: bool = True) -> Iterator[None]:
    """Within the block, decoding many files shows a progress bar on stderr (a fit that shows a
    training progress bar shows one for loading too)."""
    token = _SHOW_PROGRESS.set(show)
    try:
        yield
    finally:
        _SHOW_PROGRESS.reset(token)


def read_in_threads(read: Callable[[str], T], paths: Sequence[str], workers: int | None = None) -> list[T]:
    """``[read(p) for p in paths]``, decoded in a thread pool (image decoders release the GIL),
    in the order of ``paths``; the first failing path, in that order, raises its own error.
    Inside :func:`loading_progress`, a bar counts the decoded files."""
    bar = None
    if _SHOW_PROGRESS.get() and len(paths) >= PROGRESS_MIN_FILES:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), desc="loading", unit="file", leave=False, dynamic_ncols=True)
    try:
        if len(paths) < 2:
            return [read(p) for p in paths]
        workers = workers or min(8, os.cpu_count() or 1)
        decoded: list[T] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for value in pool.map(read, paths):
                decoded.append(value)
                if bar is not None:
                    bar.update(1)
        return decoded
    finally:
        if bar is not None:
            bar.close()
