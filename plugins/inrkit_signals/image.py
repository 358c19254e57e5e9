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

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic

import inrkit
from inrkit.errors import DataError
from inrkit.images import IMAGE_SUFFIXES, read_in_threads, read_pixels, shrink_to_max_side, to_channels, write_png
from inrkit.interfaces import Item, PluginOptions, Signal
from inrkit.sources import expand, make_names_unique

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
        paths = [path for source in sources for path in self._expand(source)]
        raw = read_in_threads(self._read, paths)
        mode = self._mode([arr for _, arr, _ in raw])
        items = []
        for name, arr, meta in raw:
            data = self._resize(to_channels(arr, mode, meta), meta)
            meta["channels"] = mode
            items.append(Item(name=name, data=data, meta=meta))
        make_names_unique(items)
        return items

    def _expand(self, source: str) -> list[str]:
        if source.startswith(SAMPLE_PREFIX):
            name = source[len(SAMPLE_PREFIX):]
            if name not in SAMPLES:
                raise DataError(f"unknown sample image {name!r}; samples: {', '.join(SAMPLES)}")
            return [source]
        return expand(source, IMAGE_SUFFIXES, "images")

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


@inrkit.hookimpl
def inrkit_register_signals() -> list[type[Signal]]:
    return [ImageSignal]
