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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic

import inrkit
from inrkit.errors import DataError
from inrkit.images import IMAGE_SUFFIXES, read_pixels, shrink_to_max_side, to_channels, write_png
from inrkit.interfaces import Item, PluginOptions, Signal

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

    options: Options

    # -- loading ------------------------------------------------------------------------------
    def load(self, sources: Sequence[str]) -> list[Item]:
        if not sources:
            sources = [SAMPLE_PREFIX + name for name in SAMPLES]
        raw: list[tuple[str, np.ndarray, dict[str, Any]]] = []
        for source in sources:
            for path in self._expand(source):
                raw.append(self._read(path))
        mode = self._mode([arr for _, arr, _ in raw])
        items = []
        for name, arr, meta in raw:
            data = self._resize(to_channels(arr, mode, meta), meta)
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

    def _read(self, source: str) -> tuple[str, np.ndarray, dict[str, Any]]:
        if source.startswith(SAMPLE_PREFIX):
            import skimage.data

            name = source[len(SAMPLE_PREFIX):]
            arr = getattr(skimage.data, name)()
            return name, arr, {"source": source, "sample": True}
        return Path(source).stem, read_pixels(source), {"source": str(source)}

    def _mode(self, arrays: list[np.ndarray]) -> str:
        if self.options.channels != "auto":
            return self.options.channels
        all_gray = all(a.ndim == 2 or a.shape[-1] in (1, 2) for a in arrays)
        return "gray" if all_gray else "rgb"

    def _resize(self, data: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        max_side = self.options.max_side
        if max_side is None and meta.get("sample"):
            max_side = SAMPLE_MAX_SIDE
        meta["original_shape"] = list(data.shape[:2])
        return shrink_to_max_side(data, max_side)

    # -- writing ------------------------------------------------------------------------------
    def save(self, item: Item, reconstruction: np.ndarray, folder: Path) -> list[Path]:
        return [write_png(folder / f"{item.name}.png", reconstruction, item.meta.get("bit_depth", 8))]


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
