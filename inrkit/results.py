"""Typed results of a run: parameter counts, the training log, per-item scores and ``metrics.json``.

Everything that reads a run's numbers (the CLI's table, ``inrkit compare``, the figures, the
benchmarks, a callback) reads these classes instead of re-spelling dictionary keys.
:class:`RunMetrics` is the ``metrics.json`` file format: :meth:`RunMetrics.to_dict` writes the
keys inrkit has always written (plus ``format_version``) and :meth:`RunMetrics.from_dict` reads
files of any earlier version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pydantic

from inrkit.errors import CheckpointError, format_validation_error
from inrkit.metrics import mean_std, psnr_of_mean_mse

#: Version of the ``metrics.json`` layout. Files without the key (written before it existed)
#: are version 1 too: the layout did not change when the key was added. Version 2 added
#: ``psnr_of_mean_mse`` and the per-item ``ms_ssim`` (with ``ms_ssim_mean``/``ms_ssim_std``); a
#: version-1 file is read with ``psnr_of_mean_mse`` computed from its items' PSNRs and no MS-SSIM.
METRICS_FORMAT_VERSION = 2

#: The scores every item has, in table order (a signal may add its own after them).
SCORES = ("psnr", "ssim", "ms_ssim")
#: Per-item keys that are not scores.
_ITEM_FACTS = ("name", "shape", "channels")
#: Top-level ``metrics.json`` keys after the score summaries, in the order they are written.
_RUN_FACTS = (
    "params", "items", "steps", "seconds", "total_seconds", "lr", "device", "processes",
    "activation", "sharing", "signal", "inrkit_version", "history",
)


@dataclasses.dataclass(frozen=True)
class ParamCounts:
    """Exact parameter counts; a complex number counts as two real parameters."""

    total: int
    shared: int
    per_item: int

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class StepLog:
    """What a callback learns after each training step.

    The loss is read from the device only on some steps (every step on the CPU; on a GPU only
    every ``train.log_every`` steps, so that the host never waits for the device inside a
    step): on the others ``loss`` is ``None``. ``item_psnr`` (each item's PSNR from its training
    loss, one per item of the run) is set on the logged steps, ``train.log_every`` apart.
    """

    step: int
    total_steps: int
    #: Learning rate this step used.
    lr: float
    #: Mean over items of each item's mean squared error, on targets in [-1, 1].
    loss: float | None = None
    #: PSNR (dB) of the mean loss, on [0, 1] values.
    psnr: float | None = None
    item_psnr: tuple[float, ...] | None = None

    @property
    def logged(self) -> bool:
        """Whether this step is one of the logged steps (its record goes into ``history``)."""
        return self.item_psnr is not None


def _gather(cls: type[pydantic.BaseModel], data: Any, field: str, wanted: Callable[[str], bool]) -> Any:
    """Flat JSON to the model: keys that are not fields (and that ``wanted`` accepts) go into ``field``."""
    if not isinstance(data, Mapping) or field in data:
        return data
    known = set(cls.model_fields)
    return {k: v for k, v in data.items() if k in known} | {field: {k: v for k, v in data.items() if k not in known and wanted(k)}}


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", allow_inf_nan=True)


class HistoryRecord(_Model):
    """One logged training step as ``metrics.json`` keeps it."""

    step: int
    loss: float
    psnr: float
    item_psnr: list[float]


class ItemMetrics(_Model):
    """One item's scores on its evaluation view.

    ``psnr``, ``ssim`` and ``ms_ssim`` always exist (``None`` where undefined: SSIM of a 1-D
    signal, MS-SSIM of an image smaller than :data:`~inrkit.metrics.MS_SSIM_MIN_SIDE`, or of a
    run written before inrkit computed it); a signal may add its own reference figures
    (super-resolution: ``bicubic_psnr``), kept in ``extra`` and written flat beside the others.
    """

    name: str
    shape: list[int]
    channels: int
    psnr: float | None
    ssim: float | None
    ms_ssim: float | None = None
    extra: dict[str, float | None] = {}

    @pydantic.model_validator(mode="before")
    @classmethod
    def _gather_extra(cls, data: Any) -> Any:
        return _gather(cls, data, "extra", lambda key: True)

    def scores(self) -> dict[str, float | None]:
        """Every score by name: ``psnr``, ``ssim``, ``ms_ssim``, then the signal's own."""
        return {"psnr": self.psnr, "ssim": self.ssim, "ms_ssim": self.ms_ssim, **self.extra}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "channels": self.channels, **self.scores()}


@dataclasses.dataclass
class Evaluation:
    """The model rendered on every item's evaluation view and scored (one evaluation of a run)."""

    #: Training step after which the model was evaluated.
    step: int
    items: list[ItemMetrics]
    #: Each item's reconstruction, ``(*spatial, channels)`` in [0, 1], at its evaluation size. A
    #: sequence rendered on demand a block of items at a time
    #: (:class:`~inrkit.training.evaluate.Reconstructions`), so it is never all in memory unless copied;
    #: during training it can be read only inside ``on_evaluate`` (see :meth:`close`).
    reconstructions: Sequence[np.ndarray]
    #: True for the evaluation after the last step (the one ``metrics.json`` reports).
    final: bool = True

    def close(self) -> None:
        """Release what renders the reconstructions on demand (the trainer does this after the
        callbacks of an evaluation during training, since the model trains on)."""
        close = getattr(self.reconstructions, "close", None)
        if callable(close):
            close()

    def metric_names(self) -> list[str]:
        return list(self.items[0].scores()) if self.items else list(SCORES)

    def summary(self, key: str) -> tuple[float | None, float | None]:
        """Mean and population standard deviation of a score over the items."""
        return mean_std([item.scores().get(key) for item in self.items])

    def psnr_of_mean_mse(self) -> float | None:
        """The PSNR of the items' mean squared error (:func:`inrkit.metrics.psnr_of_mean_mse`)."""
        return psnr_of_mean_mse(item.psnr for item in self.items)


@dataclasses.dataclass
class TrainResult:
    """What :meth:`inrkit.Trainer.fit` returns."""

    #: Steps trained in all (a resumed run counts the steps before the snapshot too).
    steps: int
    #: Training time in seconds, resumed runs included.
    seconds: float
    #: The mean loss at the last step.
    final_loss: float
    #: The logged steps' records (``step``, ``loss``, ``psnr``, ``item_psnr``).
    history: list[dict[str, Any]]
    #: The evaluation after the last step, when the fit was given an evaluator (rank 0 only).
    evaluation: Evaluation | None = None
    #: With ``train.compile``: the first step's time, compilation included (not in ``seconds``).
    compile_seconds: float | None = None
    #: Whether the training step ran compiled (``train.compile``: ``true``, or ``auto`` deciding so).
    compiled: bool | None = None
    #: Why it was or was not compiled (``auto``'s arithmetic, or the setting).
    compile_reason: str | None = None


class RunMetrics(_Model):
    """A finished run's numbers: the content of ``metrics.json``.

    Scores are summarised as mean and population standard deviation over items, as the paper's
    tables report them; ``psnr_mean`` (the mean of the items' PSNRs, as the paper averages) is the
    headline, and ``psnr_of_mean_mse`` the other average papers use (the PSNR of the items' mean
    squared error). ``metrics["psnr_mean"]`` reads the same value as ``metrics.psnr_mean``, so
    scripts written against the JSON keep working.
    """

    format_version: int = METRICS_FORMAT_VERSION
    psnr_mean: float | None
    psnr_std: float | None
    #: PSNR of the mean over items of each item's MSE (items weighted equally).
    psnr_of_mean_mse: float | None = None
    ssim_mean: float | None
    ssim_std: float | None
    #: ``<score>_mean`` / ``<score>_std`` of the signal's own scores (``bicubic_psnr_mean`` ...).
    summaries: dict[str, float | None] = {}
    params: ParamCounts
    items: list[ItemMetrics]
    steps: int
    #: Training time, resumed runs included.
    seconds: float
    #: The whole fit: loading excluded, training, evaluation and writing the checkpoint included.
    total_seconds: float | None = None
    lr: float
    device: str
    processes: int = 1
    activation: str
    sharing: str
    signal: str
    inrkit_version: str
    history: list[HistoryRecord] = []
    #: The run whose shared layers ``inrkit encode`` reused (encoded runs only).
    encoded_from: str | None = None
    #: With ``train.compile``: the step's time that compiled, compilation included (not in ``seconds``).
    compile_seconds: float | None = None
    #: Whether the training step ran compiled, and why (``train.compile=auto`` says its arithmetic).
    compiled: bool | None = None
    compile_reason: str | None = None

    @pydantic.model_validator(mode="before")
    @classmethod
    def _gather_summaries(cls, data: Any) -> Any:
        return _gather(cls, data, "summaries", lambda key: key.endswith(("_mean", "_std")))

    @pydantic.model_validator(mode="after")
    def _fill_psnr_of_mean_mse(self) -> RunMetrics:
        if self.psnr_of_mean_mse is None:  # a version-1 file: the items' PSNRs say it
            self.psnr_of_mean_mse = psnr_of_mean_mse(item.psnr for item in self.items)
        return self

    @classmethod
    def from_evaluation(cls, evaluation: Evaluation, **facts: Any) -> RunMetrics:
        """Summarise an evaluation; ``facts`` are the other fields (params, steps, seconds, ...)."""
        summaries: dict[str, float | None] = {}
        for key in evaluation.metric_names():
            summaries[f"{key}_mean"], summaries[f"{key}_std"] = evaluation.summary(key)
        main = {k: summaries.pop(k) for k in ("psnr_mean", "psnr_std", "ssim_mean", "ssim_std")}
        return cls(**main, psnr_of_mean_mse=evaluation.psnr_of_mean_mse(), summaries=summaries, items=evaluation.items, **facts)

    @classmethod
    def from_dict(cls, data: Any, source: str = "metrics.json") -> RunMetrics:
        """Read a ``metrics.json`` (any version up to this one); a bad file is a CheckpointError."""
        if not isinstance(data, Mapping):
            raise CheckpointError(f"{source} is not a valid inrkit metrics file: it holds {type(data).__name__}, not a table")
        version = data.get("format_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise CheckpointError(f"{source} is not a valid inrkit metrics file: its format_version is {str(version)[:40]!r}")
        if version > METRICS_FORMAT_VERSION:
            raise CheckpointError(
                f"{source} has format version {version}; this inrkit reads up to {METRICS_FORMAT_VERSION} (upgrade inrkit)"
            )
        try:
            return cls.model_validate({**data, "format_version": version})  # the version read, not today's
        except pydantic.ValidationError as exc:
            raise CheckpointError(f"{source} is not a valid inrkit metrics file: {format_validation_error(exc)}") from None

    def metric_names(self) -> list[str]:
        """Per-item score names in table order: ``psnr``, ``ssim``, ``ms_ssim``, then the signal's own."""
        return list(self.items[0].scores()) if self.items else list(SCORES)

    def summary(self, key: str) -> tuple[float | None, float | None]:
        """``(mean, std)`` of a score over the items."""
        flat = self._summaries()
        return flat.get(f"{key}_mean"), flat.get(f"{key}_std")

    def _summaries(self) -> dict[str, float | None]:
        return {
            "psnr_mean": self.psnr_mean, "psnr_std": self.psnr_std, "psnr_of_mean_mse": self.psnr_of_mean_mse,
            "ssim_mean": self.ssim_mean, "ssim_std": self.ssim_std, **self.summaries,
        }

    def to_dict(self) -> dict[str, Any]:
        """The ``metrics.json`` layout (today's version, whichever version was read): summaries
        first, then the run's facts and history."""
        out: dict[str, Any] = {"format_version": METRICS_FORMAT_VERSION, **self._summaries()}
        for key in _RUN_FACTS:
            value = getattr(self, key)
            if key == "params":
                value = value.as_dict()
            elif key in ("items", "history"):
                value = [v.to_dict() if isinstance(v, ItemMetrics) else v.model_dump() for v in value]
            out[key] = value
        for key in ("encoded_from", "compile_seconds", "compiled", "compile_reason"):  # written where they apply
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]


def item_metrics(
    name: str, target: np.ndarray, psnr: float | None, ssim: float | None, extra: Mapping[str, float | None],
    ms_ssim: float | None = None,
) -> ItemMetrics:
    """An item's scores for a target of shape ``(*spatial, channels)``."""
    return ItemMetrics(
        name=name, shape=[int(s) for s in target.shape[:-1]], channels=int(target.shape[-1]),
        psnr=psnr, ssim=ssim, ms_ssim=ms_ssim, extra=dict(extra),
    )


def history_records(history: Sequence[Mapping[str, Any]]) -> list[HistoryRecord]:
    return [HistoryRecord.model_validate(record) for record in history]
