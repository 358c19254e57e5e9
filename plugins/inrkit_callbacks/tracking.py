"""What the tracker callbacks (TensorBoard, W&B, MLflow) log alike: the scalars of a logged step,
the finite numbers of ``metrics.json`` and the reconstructions shown after an evaluation, so that
each tracker only says how its service takes them."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np

from inrkit.interfaces import FitContext
from inrkit.results import Evaluation, RunMetrics, StepLog


def tag(name: str) -> str:
    """An item's name as one segment of a metric name (no whitespace or slashes)."""
    return re.sub(r"[\s/]+", "_", name) or "_"


def finite(value: Any) -> bool:
    """Whether ``value`` is a real, finite number (``bool`` is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def step_scalars(context: FitContext, log: StepLog, max_items: int) -> dict[str, Any]:
    """A logged step's ``train/loss``, ``train/psnr``, ``train/lr`` and ``train_item_psnr/<item>``
    for the first ``max_items`` items (values as they are: a tracker drops what it cannot take)."""
    values: dict[str, Any] = {"train/loss": log.loss, "train/psnr": log.psnr, "train/lr": log.lr}
    for name, value in list(zip(context.item_names, log.item_psnr or (), strict=False))[:max_items]:
        values[f"train_item_psnr/{tag(name)}"] = value
    return values


def summary_values(metrics: RunMetrics) -> dict[str, float]:
    """``metrics.json``'s finite numbers: the top-level scalars (``psnr_mean``, ``steps`` ...),
    the signal's ``summaries`` (``ms_ssim_mean`` ...) and the parameter counts (``params/total``)."""
    data = metrics.to_dict()
    values = {k: v for k, v in data.items() if k != "format_version" and finite(v)}
    values.update({k: v for k, v in (data.get("summaries") or {}).items() if finite(v)})
    values.update({f"params/{k}": v for k, v in (data.get("params") or {}).items() if finite(v)})
    return values


def shown_images(evaluation: Evaluation, max_images: int) -> Iterator[tuple[str, np.ndarray]]:
    """``(item name, image in [0, 1])`` of the first ``max_images`` 2-D reconstructions: ``H×W``
    for one channel, ``H×W×C`` for 3 or 4 (video and 1-D items are skipped)."""
    shown = zip(evaluation.items[:max_images], evaluation.reconstructions, strict=False)
    for item, recon in shown:
        if recon.ndim == 3 and recon.shape[-1] in (1, 3, 4):
            image = np.clip(recon, 0.0, 1.0)
            yield item.name, image[..., 0] if image.shape[-1] == 1 else image


def as_uint8(image: np.ndarray) -> np.ndarray:
    """An image in [0, 1] as 8-bit values, rounded."""
    return (image * 255.0 + 0.5).astype(np.uint8)


class GuardedLogging:
    """A tracker's calls to its service, guarded: a failure is warned about once, the service's
    run is abandoned and the fit goes on (a tracker must never lose a run). Subclasses say
    whether a run is open and how to abandon it."""

    name: ClassVar[str]
    #: The service's name in the warning ("W&B", "MLflow").
    service: ClassVar[str] = "the tracker"
    _warned = False

    def _is_open(self) -> bool:
        raise NotImplementedError

    def _abandon(self) -> None:
        raise NotImplementedError

    def _safely(self, what: str, action: Callable[[], Any]) -> None:
        if not self._is_open():
            return
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - a tracker's failure must not lose the run
            self._give_up(what, exc)

    def _give_up(self, what: str, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(f"{self.name}: {what} failed ({exc}); the run goes on without {self.service} logging",
                          RuntimeWarning, stacklevel=3)
        self._abandon()
