"""Still images: files, folders or globs in any format imageio reads; NumPy arrays; built-in samples.

Conversion rules, applied explicitly rather than left to the decoder:

- 8-bit data is divided by 255, 16-bit by 65535, floats are clipped to [0, 1]; reconstructions
  are written back at the source's bit depth (8 or 16) as PNG.
- ``channels="auto"`` fits RGB unless every item is grayscale; RGBA and gray+alpha are
  composited over a white background (``channels="rgba"`` keeps alpha as a fourth channel).
- Multi-frame files (GIF, TIFF stacks) use their first frame.
- ``max_side`` shrinks an image (antialiased) so its longer side is at most that many pixels;
  images are never enlarged. The built-in samples default to a longer side of 128 pixels.

**Class folders.** A folder that holds no image files itself but subfolders that do is read as
torchvision's ``ImageFolder`` layout, ``root/<class>/<file>``: every image of every class folder,
sorted by class then by file name, named ``<class>-<stem>`` (``cat-0001``), with
``meta["class"]`` the folder's name. Hidden folders (``.name``), folders without images and
deeper folders are skipped; a link to a folder counts once. A folder with image files of its own
is read as before: its files only, subfolders ignored. A class name that cannot be part of a file
name (``:``, control characters ...) is made safe in the item name and kept as is in
``meta["class"]``.

**Arrays.** A ``.npy`` file or an ``.npz`` member (named as a file or matched by a glob; a
folder's ``.npy`` files are not picked up) is a data set of ``N`` images of one size:

- ``(N, H, W, C)`` with 1 to 4 channels last (gray, gray + alpha, RGB, RGBA), or ``(N, H, W)``
  gray; ``uint8`` (divided by 255, written back as 8-bit), ``uint16`` (by 65535, 16-bit), or
  ``float16``/``float32``/``float64`` in [0, 1]. The channel rules above apply as to files.
- An ``.npz`` holding one array needs no key; with several, ``--set signal.key=NAME`` chooses
  one (the error lists them).
- Item ``i`` is named ``<stem>-<i>``, zero-padded to the width of ``N - 1`` (``cifar-00000`` ...
  ``cifar-49999``): the same names every run. ``meta`` holds ``source``, ``index``, ``key``
  (``.npz``), ``bit_depth``, ``channels`` and ``original_shape``.
- ``.npy`` files and uncompressed ``.npz`` members (``np.savez``) are memory-mapped and converted
  chunk by chunk into one float32 array the items are views of, so the stored bytes are never
  held in memory beside it; a compressed member (``np.savez_compressed``) is decompressed once,
  as a stream.
- Refused, each with one error naming the file: another rank or an ``(N, C, H, W)`` layout (the
  error says ``np.moveaxis(a, 1, -1)``), a one-image ``(H, W, C)`` array (save ``a[None]``), no
  images, bool, signed, wider integer, complex, structured or object dtypes (nothing is ever
  unpickled: ``allow_pickle`` is never set), NaN or infinite floats (how many, the first item),
  floats outside [0, 1] (the range seen: a 0–255 float array is the usual mistake), images over
  the pixel limit, a header promising more data than the file holds, a float32 result larger
  than the machine's available memory, and a damaged or encrypted zip.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic

import inrkit
from inrkit.arrays import ArraySource, is_array_file, item_names, open_array, to_images
from inrkit.errors import DataError
from inrkit.images import IMAGE_SUFFIXES, read_in_threads, read_pixels, shrink_to_max_side, to_channels, write_png
from inrkit.interfaces import Item, PluginOptions, Signal
from inrkit.names import safe_name
from inrkit.sources import expand_classes, make_names_unique

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
        #: The array of an ``.npz`` source holding several (``np.savez(f, train=..., test=...)``:
        #: ``train``); ``None`` takes an ``.npz``'s only array. Ignored for other sources.
        key: str | None = pydantic.Field(None, min_length=1)

    options: Options

    # -- loading ------------------------------------------------------------------------------
    def load(self, sources: Sequence[str]) -> list[Item]:
        if not sources:
            sources = [SAMPLE_PREFIX + name for name in SAMPLES]
        # Each source in order: image files (with their class folder, if any) or arrays, whose
        # headers are all checked before any file is decoded.
        entries: list[tuple[str, str | None] | ArraySource] = []
        for source in sources:
            for path, label in self._expand(source):
                entries.append(open_array(path, self.options.key) if is_array_file(path) else (path, label))
        files = [entry for entry in entries if isinstance(entry, tuple)]
        arrays = [entry for entry in entries if isinstance(entry, ArraySource)]
        raw = iter(read_in_threads(self._read, [path for path, _ in files]))
        decoded = [(next(raw), label) for _, label in files]
        mode = self._mode([arr for (_, arr, _), _ in decoded], [a.channels for a in arrays])
        items = []
        images = iter(decoded)
        for entry in entries:
            if isinstance(entry, ArraySource):
                items.extend(self._array_items(entry, mode))
                continue
            (name, arr, meta), label = next(images)
            data = self._resize(to_channels(arr, mode, meta), meta)
            meta["channels"] = mode
            if label is not None:
                name = f"{safe_name(label, 'class')}-{name}"
                meta["class"] = label
            items.append(Item(name=name, data=data, meta=meta))
        make_names_unique(items)
        return items

    def _expand(self, source: str) -> list[tuple[str, str | None]]:
        if source.startswith(SAMPLE_PREFIX):
            name = source[len(SAMPLE_PREFIX):]
            if name not in SAMPLES:
                raise DataError(f"unknown sample image {name!r}; samples: {', '.join(SAMPLES)}")
            return [(source, None)]
        return expand_classes(source, IMAGE_SUFFIXES, "images")

    def _read(self, source: str) -> tuple[str, np.ndarray, dict[str, Any]]:
        if source.startswith(SAMPLE_PREFIX):
            import skimage.data

            name = source[len(SAMPLE_PREFIX):]
            arr = getattr(skimage.data, name)()
            return name, arr, {"source": source, "sample": True}
        return Path(source).stem, read_pixels(source), {"source": str(source)}

    def _array_items(self, source: ArraySource, mode: str) -> list[Item]:
        """One item per image of an array: views of one float32 array, named ``<stem>-<index>``."""
        data = to_images(source, mode, self.options.max_side)
        names = item_names(Path(source.path).stem, source.count)
        original = list(source.size)
        common = {"source": source.path, **({} if source.key is None else {"key": source.key}),
                  "bit_depth": source.bit_depth, "channels": mode}
        return [
            Item(name=name, data=data[i], meta={**common, "index": i, "original_shape": list(original)})
            for i, name in enumerate(names)
        ]

    def _mode(self, arrays: list[np.ndarray], array_channels: Sequence[int] = ()) -> str:
        if self.options.channels != "auto":
            return self.options.channels
        all_gray = all(a.ndim == 2 or a.shape[-1] in (1, 2) for a in arrays) and all(c in (1, 2) for c in array_channels)
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
