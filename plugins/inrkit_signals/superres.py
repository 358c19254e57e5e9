"""Super-resolution: fit the image shrunk by ``scale``, score the reconstruction at full size.

Each image (after ``max_side``) is the ground truth; the network only ever sees it downsampled
by ``scale`` (antialiased), and is evaluated on the full-size pixel grid — the INR's continuity
does the upsampling. As the reference point, the same low-resolution image upsampled bicubically
is scored too (``bicubic_psnr``, ``bicubic_ssim`` per item and their means).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pydantic

import inrkit
from inrkit.errors import DataError
from inrkit.images import resize_to
from inrkit.interfaces import Item, Signal
from inrkit.metrics import psnr, ssim
from inrkit_signals.image import ImageSignal


class SuperResSignal(ImageSignal):
    name = "superres"

    class Options(ImageSignal.Options):
        #: Downsampling factor of the training image (2 and 4 in the paper).
        scale: int = pydantic.Field(2, ge=2)

    options: Options

    def load(self, sources: Sequence[str]) -> list[Item]:
        items = super().load(sources)
        s = self.options.scale
        for item in items:
            h, w = item.shape
            low = (max(1, round(h / s)), max(1, round(w / s)))
            if min(low) < 2:
                raise DataError(f"{item.name}: {h}x{w} is too small to shrink by {s}")
            item.meta["low_res"] = resize_to(item.data, low)
        return items

    def train_view(self, item: Item) -> np.ndarray:
        return item.meta["low_res"]

    def reference_views(self, item: Item) -> dict[str, np.ndarray]:
        if "bicubic" not in item.meta:
            item.meta["bicubic"] = resize_to(item.meta["low_res"], item.shape, order=3)
        return {"bicubic": item.meta["bicubic"]}

    def extra_metrics(self, item: Item) -> dict[str, float | None]:
        bicubic = self.reference_views(item)["bicubic"]
        return {"bicubic_psnr": psnr(bicubic, item.data), "bicubic_ssim": ssim(bicubic, item.data)}


@inrkit.hookimpl
def inrkit_register_signals() -> list[type[Signal]]:
    return [SuperResSignal]
