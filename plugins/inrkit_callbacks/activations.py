"""Layer statistics during training: pre-activations, living units and gradients, as JSON lines.

Every ``every`` steps (default: ten times over the fit, and before the first step) the model is
measured with :func:`inrkit.tools.diagnostics.layer_statistics` on ``points`` coordinates per item
(the same ones each time), after the step's backward pass so that each layer's gradient norm is
included, and one JSON line per measurement goes to ``activations.jsonl`` in the run folder::

    {"step": 300, "layers": [{"layer": "first", "position": "first", "shared": false,
      "pre_activation": {"abs_mean": 0.44, ...}, "alive_fraction": 0.35, "dead_units": 0.0,
      "grad_norm": 0.2, ...}, ...]}

``inrkit analyze activations RUN`` reads a finished run the same way; this callback shows how the
layers got there. It reads the model only. In a distributed run, rank 0's per-item rows of other
ranks' items are those of the last gathering (snapshots, evaluations), so measure in one process.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TextIO

import pydantic
import torch

import inrkit
from inrkit.errors import ConfigError
from inrkit.interfaces import Callback, FitContext, PluginOptions
from inrkit.results import StepLog, TrainResult
from inrkit.tools import layer_statistics, sample_coords


def _clean(value: Any) -> Any:
    """JSON without NaN or infinities (``null`` instead)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


class ActivationStats(Callback):
    name = "activations"

    class Options(PluginOptions):
        #: Measure every this many steps; 0: ten times over the fit.
        every: int = pydantic.Field(0, ge=0)
        #: Coordinates per item measured each time.
        points: int = pydantic.Field(2048, gt=0)
        #: The log file; relative to the run folder (or the working directory without one).
        path: str = "activations.jsonl"

    options: Options

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._file: TextIO | None = None
        self._coords: torch.Tensor | None = None
        self._every = 1

    def on_fit_start(self, context: FitContext) -> None:
        model = context.model
        if model is None or not getattr(model, "layer_defs", None):
            raise ConfigError("callback 'activations' measures MultiINR-style models (with layer_defs) only")
        path = Path(self.options.path)
        if not path.is_absolute() and context.run_dir is not None:
            path = context.run_dir / path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a" if context.start_step else "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(f"callback 'activations': cannot write {path}: {exc.strerror or exc}") from None
        self._every = self.options.every or max(1, context.total_steps // 10)
        device = next(model.parameters()).device
        self._coords = sample_coords(model.spec.item_shapes, self.options.points).to(device)
        if not context.start_step:
            self._measure(context, 0)

    def _measure(self, context: FitContext, step: int) -> None:
        if self._file is None or self._coords is None or context.model is None:
            return
        stats = layer_statistics(context.model, self._coords)
        record = {"step": step, "layers": [s.as_dict() for s in stats]}
        self._file.write(json.dumps(_clean(record), allow_nan=False) + "\n")

    def on_step_end(self, context: FitContext, log: StepLog) -> None:
        if log.step % self._every == 0 or log.step == log.total_steps:
            self._measure(context, log.step)

    def on_fit_end(self, context: FitContext, result: TrainResult | None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@inrkit.hookimpl
def inrkit_register_callbacks() -> list[type[Callback]]:
    return [ActivationStats]
