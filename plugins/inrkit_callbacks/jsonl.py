"""A JSON Lines log of the fit: one line per logged step, evaluation, snapshot, start and end.

Written to ``log.jsonl`` in the run folder (``path`` changes it: a relative path is inside the
run folder, or the working directory when nothing is saved), flushed line by line so a long
run can be followed with ``tail -f`` or read while it trains::

    {"event": "step", "step": 300, "loss": 0.0012, "psnr": 35.2, "lr": 5e-05, "item_psnr": {"kodim01": 33.1, ...}}

Every line has ``event`` and ``step``. A resumed run keeps the lines up to its snapshot's step
and continues after them, so the file never holds a step twice. Non-finite numbers are ``null``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TextIO

import inrkit
from inrkit.errors import ConfigError
from inrkit.interfaces import Callback, FitContext, PluginOptions
from inrkit.results import Evaluation, StepLog, TrainResult


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class JsonlLog(Callback):
    name = "jsonl"

    class Options(PluginOptions):
        #: The log file; relative to the run folder (or the working directory without one).
        path: str = "log.jsonl"

    options: Options

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._file: TextIO | None = None
        self.path: Path | None = None

    def on_fit_start(self, context: FitContext) -> None:
        path = Path(self.options.path)
        if not path.is_absolute() and context.run_dir is not None:
            path = context.run_dir / path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            kept = _lines_up_to(path, context.start_step) if context.start_step and path.is_file() else []
            self._file = open(path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed at fit end
        except OSError as exc:
            raise ConfigError(f"callback 'jsonl': cannot write {path}: {exc.strerror or exc}") from None
        self.path = path
        for line in kept:
            self._file.write(line)
        if not context.start_step:
            self._write(
                {"event": "start", "step": 0, "total_steps": context.total_steps, "lr": context.lr,
                 "device": context.device, "items": list(context.item_names)}
            )

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record, allow_nan=False) + "\n")

    def on_step_end(self, context: FitContext, log: StepLog) -> None:
        if not log.logged:
            return
        self._write(
            {
                "event": "step", "step": log.step, "loss": _finite(log.loss), "psnr": _finite(log.psnr), "lr": log.lr,
                "item_psnr": {n: _finite(v) for n, v in zip(context.item_names, log.item_psnr or (), strict=False)},
            }
        )

    def on_snapshot(self, context: FitContext, step: int, path: Path | None) -> None:
        self._write({"event": "snapshot", "step": step, "path": None if path is None else str(path)})

    def on_evaluate(self, context: FitContext, evaluation: Evaluation) -> None:
        record: dict[str, Any] = {"event": "evaluate", "step": evaluation.step, "final": evaluation.final}
        for key in evaluation.metric_names():
            mean, std = evaluation.summary(key)
            record[f"{key}_mean"], record[f"{key}_std"] = _finite(mean), _finite(std)
        record["items"] = {it.name: {k: _finite(v) for k, v in it.scores().items()} for it in evaluation.items}
        self._write(record)

    def on_fit_end(self, context: FitContext, result: TrainResult | None) -> None:
        if result is not None:
            self._write({"event": "end", "step": result.steps, "seconds": result.seconds, "loss": _finite(result.final_loss)})
        if self._file is not None:
            self._file.close()
            self._file = None


def _lines_up_to(path: Path, step: int) -> list[str]:
    """The log's lines of steps up to ``step`` (a resumed run rewrites what came after)."""
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            if int(json.loads(line).get("step", 0)) <= step:
                kept.append(line)
        except (ValueError, TypeError, AttributeError):
            continue  # a line cut short by the interruption
    return kept


@inrkit.hookimpl
def inrkit_register_callbacks() -> list[type[Callback]]:
    return [JsonlLog]
