"""Intervals for comparisons over seeds: a mean with its 95% t-interval, and paired differences.

Why a t-interval over **seeds** for a paired difference: within one run of a sharing strategy
the items share layers, so their scores are not independent draws; different seeds are. Each
seed gives one observation, the mean over the items of ``method − reference`` (same items,
same seed), and the interval is Student's t over those observations. With a single seed there
is nothing to replicate over, and the interval falls back to the per-item differences (it then
says how much the items disagree, not how much a rerun would move the figure; ``unit`` records
which). A bootstrap was not chosen: with the 3–5 seeds a comparison affords it understates the
interval, and the t-interval is exact for normal noise and the convention readers expect.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence

from inrkit.errors import ConfigError

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean, the half-width of its confidence interval (``None`` with one value) and what the
    ``n`` values were (``"seeds"`` or ``"items"``)."""

    mean: float
    half_width: float | None
    n: int
    unit: str = "seeds"
    confidence: float = CONFIDENCE

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of zero (the difference is resolved)."""
        return self.half_width is not None and abs(self.mean) > self.half_width

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Interval:
        """Read back :meth:`as_dict` (the derived ``low`` and ``high`` are ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {**dataclasses.asdict(self), "low": self.low, "high": self.high}

    def format(self, digits: int = 2, signed: bool = False) -> str:
        mean = f"{self.mean:+.{digits}f}" if signed else f"{self.mean:.{digits}f}"
        return mean if self.half_width is None else f"{mean} ± {self.half_width:.{digits}f}"


def t_interval(values: Sequence[float], unit: str = "seeds", confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values`` with its two-sided Student-t interval (no interval for one value)."""
    from scipy import stats

    data = [float(v) for v in values]
    if not data:
        raise ConfigError("no values to summarise")
    if not all(math.isfinite(v) for v in data):
        raise ConfigError(f"cannot summarise non-finite values {data}")
    mean = statistics.fmean(data)
    if len(data) < 2:
        return Interval(mean, None, 1, unit, confidence)
    half = float(stats.t.ppf(0.5 + confidence / 2, len(data) - 1)) * statistics.stdev(data) / math.sqrt(len(data))
    return Interval(mean, half, len(data), unit, confidence)


#: Per-item scores of one method: seed -> item name -> score.
Scores = Mapping[int, Mapping[str, float]]


def paired_difference(method: Scores, reference: Scores, confidence: float = CONFIDENCE) -> Interval | None:
    """``method − reference`` over the seeds and items both have (``None`` when they share none).

    Several common seeds: one observation per seed (the mean over items of the differences),
    a t-interval over seeds. One common seed: a t-interval over its per-item differences.
    """
    seeds = sorted(set(method) & set(reference))
    per_seed: list[list[float]] = []
    for seed in seeds:
        names = [name for name in method[seed] if name in reference[seed]]
        if names:
            per_seed.append([method[seed][n] - reference[seed][n] for n in names])
    if not per_seed:
        return None
    if len(per_seed) == 1:
        return t_interval(per_seed[0], "items", confidence)
    return t_interval([statistics.fmean(d) for d in per_seed], "seeds", confidence)


def paired_cell(paired: Mapping[str, object] | None, digits: int = 2) -> str:
    """A table cell for a paired difference (``Interval.as_dict``); an interval over the items of
    one seed is marked, as it says nothing about how much a rerun would move the difference."""
    if not paired:
        return "n/a"
    interval = Interval.from_dict(paired)
    text = interval.format(digits, signed=True)
    return f"{text} (items, one seed)" if interval.unit == "items" and interval.half_width is not None else text
