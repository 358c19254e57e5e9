"""TensorBoard logging through ``torch.utils.tensorboard`` (needs ``pip install 'inrkit[tensorboard]'``).

Event files go to ``tensorboard/`` in the run folder (``log_dir`` changes it: a relative path is
inside the run folder, or the working directory when nothing is saved); watch a run with
``tensorboard --logdir runs/``. Written:

- at every logged step (``train.log_every``): ``train/loss``, ``train/psnr``, ``train/lr`` and
  ``train_item_psnr/<item>`` for the first ``max_items`` items;
- at every evaluation (after the last step, and every ``train.eval_every`` steps):
  ``eval/<score>_mean`` and ``eval_item_psnr/<item>``, and the first ``max_images`` items'
  reconstructions as images (2-D items);
- the run's configuration as text.

A resumed run drops the events logged after its snapshot (TensorBoard's ``purge_step``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic

import inrkit
from inrkit.errors import ConfigError
from inrkit.interfaces import Callback, FitContext, PluginOptions
from inrkit.results import Evaluation, StepLog, TrainResult

from .tracking import shown_images, step_scalars, tag

MISSING = (
    "the tensorboard callback needs the tensorboard package, which is not installed: "
    "pip install 'inrkit[tensorboard]'"
)


class TensorBoard(Callback):
    name = "tensorboard"

    class Options(PluginOptions):
        #: Folder of the event files; relative to the run folder (or the working directory without one).
        log_dir: str = "tensorboard"
        #: Per-item PSNR curves for at most this many items (0: none).
        max_items: int = pydantic.Field(16, ge=0)
        #: Reconstructions shown as images at each evaluation, for at most this many items.
        max_images: int = pydantic.Field(8, ge=0)

    options: Options

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(MISSING) from None
        self._writer_class = SummaryWriter
        self._writer: Any = None
        self.log_dir: Path | None = None

    def on_fit_start(self, context: FitContext) -> None:
        log_dir = Path(self.options.log_dir)
        if not log_dir.is_absolute() and context.run_dir is not None:
            log_dir = context.run_dir / log_dir
        try:
            self._writer = self._writer_class(log_dir=str(log_dir), purge_step=context.start_step + 1 if context.start_step else None)
        except OSError as exc:
            raise ConfigError(f"callback 'tensorboard': cannot write {log_dir}: {exc.strerror or exc}") from None
        self.log_dir = log_dir
        if context.config and not context.start_step:
            self._writer.add_text("config", "```json\n" + json.dumps(context.config, indent=2) + "\n```", 0)

    def on_step_end(self, context: FitContext, log: StepLog) -> None:
        if self._writer is None or not log.logged:
            return
        w, step = self._writer, log.step
        for key, value in step_scalars(context, log, self.options.max_items).items():
            w.add_scalar(key, value, step)

    def on_evaluate(self, context: FitContext, evaluation: Evaluation) -> None:
        if self._writer is None:
            return
        w, step = self._writer, evaluation.step
        for key in evaluation.metric_names():
            mean, _ = evaluation.summary(key)
            if mean is not None:
                w.add_scalar(f"eval/{key}_mean", mean, step)
        for item in evaluation.items[: self.options.max_items]:
            if item.psnr is not None:
                w.add_scalar(f"eval_item_psnr/{tag(item.name)}", item.psnr, step)
        for name, image in shown_images(evaluation, self.options.max_images):
            w.add_image(f"reconstruction/{tag(name)}", image, step, dataformats="HW" if image.ndim == 2 else "HWC")
        w.flush()

    def on_snapshot(self, context: FitContext, step: int, path: Path | None) -> None:
        if self._writer is not None:
            self._writer.flush()

    def on_fit_end(self, context: FitContext, result: TrainResult | None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


@inrkit.hookimpl
def inrkit_register_callbacks() -> list[type[Callback]]:
    return [TensorBoard]
