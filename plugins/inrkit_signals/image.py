"""Still images: files, folders or globs in any format imageio reads; built-in samples.

Conversion rules, applied explicitly rather than left to the decoder:

- 8-bit data is divided by 255, 16-bit by 65535, floats are clipped to [0, 1]; reconstructions
  are written back at the source's bit depth (8 or 16) as PNG.
- ``channels="auto"`` fits RGB unless every item is grayscale; RGBA and gray+alpha are
  composited over a white background (``channels="rgba"`` keeps alpha as a fourth channel).
- Multi-frame files (GIF, TIFF stacks) use their first frame.
- ``max_side`` shrinks an image (antialiased) so its longer side is at most that many pixels;
  images are never enlarged. The built-in samples default to a longer side of 128 pixels.
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pydantic

import inrkit
from inrkit.errors import DataError
from inrkit.images import read_image, write_png
from inrkit.interfaces import Item, PluginOptions, Signal

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm", ".pnm"}
SAMPLES = ("astronaut", "coffee", "chelsea", "rocket")
SAMPLE_PREFIX = "sample:"
SAMPLE_MAX_SIDE = 128


class ImageSignal(Signal):
    name = "image"
    in_dim = 2

    class Options(PluginOptions):
        #: Longer side in pixels after loading (antialiased downscale); ``None`` keeps the size.
        max_side: int | None = pydantic.Field(None, gt=0)
        #: ``auto``: RGB unless all images are gray; or force ``rgb``, ``gray`` or ``rgba``.
        channels: Literal["auto", "rgb", "gray", "rgba"] = "auto"

    # -- loading ------------------------------------------------------------------------------
    def load(self, sources: Sequence[str]) -> list[Item]:
        if not sources:
            sources = [SAMPLE_PREFIX + name for name in SAMPLES]
        raw: list[tuple[str, np.ndarray, dict]] = []
        for source in sources:
            for path in self._expand(source):
                raw.append(self._read(path))
        mode = self._mode([arr for _, arr, _ in raw])
        items = []
        for name, arr, meta in raw:
            data = self._resize(_to_channels(arr, mode, meta), meta)
            meta["channels"] = mode
            items.append(Item(name=name, data=data, meta=meta))
        _dedupe_names(items)
        return items

    def _expand(self, source: str) -> list[str]:
        if not source.strip():
            raise DataError("an empty path was given as data")
        if source.startswith(SAMPLE_PREFIX):
            name = source[len(SAMPLE_PREFIX):]
            if name not in SAMPLES:
                raise DataError(f"unknown sample image {name!r}; samples: {', '.join(SAMPLES)}")
            return [source]
        if any(ch in source for ch in "*?["):
            matches = sorted(p for p in glob.glob(source, recursive=True) if os.path.isfile(p))
            if not matches:
                raise DataError(f"no files match {source!r}")
            return matches
        path = Path(source)
        if path.is_dir():
            files = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(
                    f"folder {source} holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            return files
        if not path.exists():
            raise DataError(f"no such file or folder: {source}")
        return [source]

    def _read(self, source: str) -> tuple[str, np.ndarray, dict]:
        if source.startswith(SAMPLE_PREFIX):
            import skimage.data

            name = source[len(SAMPLE_PREFIX):]
            arr = getattr(skimage.data, name)()
            return name, arr, {"source": source, "sample": True}
        try:
            arr = read_image(source)
        except Exception as exc:  # noqa: BLE001 - every decoder failure is the file's fault
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"cannot read image {source}: {reason}") from None
        if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] not in (1, 2, 3, 4)):
            arr = arr[0]  # multi-frame file: first frame
        if arr.ndim not in (2, 3) or arr.size == 0:
            raise DataError(f"cannot use image {source}: unexpected array shape {arr.shape}")
        return Path(source).stem, arr, {"source": str(source)}

    def _mode(self, arrays: list[np.ndarray]) -> str:
        if self.options.channels != "auto":
            return self.options.channels
        all_gray = all(a.ndim == 2 or a.shape[-1] in (1, 2) for a in arrays)
        return "gray" if all_gray else "rgb"

    def _resize(self, data: np.ndarray, meta: dict) -> np.ndarray:
        max_side = self.options.max_side
        if max_side is None and meta.get("sample"):
            max_side = SAMPLE_MAX_SIDE
        meta["original_shape"] = list(data.shape[:2])
        return shrink_to_max_side(data, max_side)

    # -- writing ------------------------------------------------------------------------------
    def save(self, item: Item, reconstruction: np.ndarray, folder: Path) -> list[Path]:
        return [write_png(folder / f"{item.name}.png", reconstruction, item.meta.get("bit_depth", 8))]


def resize_to(data: np.ndarray, size: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize ``(H, W, C)`` in [0, 1] to ``size``, antialiased when shrinking."""
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


def _to_float(arr: np.ndarray, meta: dict) -> np.ndarray:
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


def _to_channels(arr: np.ndarray, mode: str, meta: dict) -> np.ndarray:
    """``(H, W[, C])`` in the source dtype to ``(H, W, C')`` float32 in [0, 1] for ``mode``."""
    data = _to_float(arr, meta)
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


def _dedupe_names(items: list[Item]) -> None:
    """Make names unique: a repeated name gets ``-2``, ``-3``, ... (skipping names already taken)."""
    taken = {item.name for item in items}
    seen: set[str] = set()
    for item in items:
        if item.name in seen:
            k = 2
            while f"{item.name}-{k}" in taken:
                k += 1
            item.name = f"{item.name}-{k}"
            taken.add(item.name)
        seen.add(item.name)


@inrkit.hookimpl
def inrkit_register_signals() -> list[type[Signal]]:
    return [ImageSignal]
