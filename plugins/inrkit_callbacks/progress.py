"""A progress bar (tqdm): steps done, and the loss and PSNR of the last logged step.

``inrkit run`` shows it when stderr is a terminal (``--progress/--no-progress``);
``inrkit.fit(progress=True)`` adds it in Python. Like every callback it can also be named in
``train.callbacks`` or with ``--log progress``.
"""

from __future__ import annotations

from typing import Any

import inrkit
from inrkit.interfaces import Callback, FitContext, PluginOptions
from inrkit.results import StepLog, TrainResult


class Progress(Callback):
    name = "progress"

    class Options(PluginOptions):
        #: Text in front of the bar.
        description: str = "fitting"

    options: Options

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._bar: Any = None

    def on_fit_start(self, context: FitContext) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=context.total_steps, initial=context.start_step, desc=self.options.description, unit="step",
            leave=False, dynamic_ncols=True,
        )

    def on_step_end(self, context: FitContext, log: StepLog) -> None:
        if self._bar is None:
            return
        if log.logged and log.loss is not None and log.psnr is not None:
            self._bar.set_postfix(loss=f"{log.loss:.2e}", psnr=f"{log.psnr:.2f}dB", refresh=False)
        self._bar.update(1)

    def on_fit_end(self, context: FitContext, result: TrainResult | None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@inrkit.hookimpl
def inrkit_register_callbacks() -> list[type[Callback]]:
    return [Progress]
