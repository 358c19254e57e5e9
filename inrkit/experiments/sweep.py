"""A grid of settings × seeds, ranked by a metric with intervals: ``inrkit sweep``.

``--grid train.lr=2e-4,5e-4 --grid width=32,64`` makes every combination (the run flags' short
names ``width``, ``layers``, ``steps``, ``lr``, ``activation``, ``sharing`` and ``signal`` stand
for their config keys). Each setting is fitted at every seed into ``OUT/<setting>/seed-<n>/``,
resumable point by point (:mod:`inrkit.experiments.runner`). ``sweep.md`` ranks the settings by the
metric's mean over seeds (``psnr``, ``ssim`` or ``ms-ssim``) with its 95% t-interval and gives each setting's paired difference to the
best one (same seeds, same items): a setting whose interval includes zero is not resolved from
the best by this many seeds.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from inrkit import files
from inrkit.errors import ConfigError
from inrkit.experiments import runner as experiments
from inrkit.experiments import stats
from inrkit.experiments.compare import METRIC_LABELS, METRICS, metric_key, summarise
from inrkit.experiments.runner import PointResult, Variant

SWEEP_JSON = "sweep.json"
SWEEP_MD = "sweep.md"
__all__ = ["Axis", "METRICS", "best_line", "grid_variants", "markdown", "parse_axis", "rank", "sweep"]
#: The run flags' names, usable as grid keys.
ALIASES = {
    "width": "model.width", "layers": "model.layers", "steps": "train.steps", "lr": "train.lr",
    "activation": "activation.name", "sharing": "sharing.name", "signal": "signal.name",
}


@dataclasses.dataclass(frozen=True)
class Axis:
    """One ``--grid`` option: the key as given, its config key and its values (as text)."""

    label: str
    key: str
    values: tuple[str, ...]


def split_values(text: str) -> list[str]:
    """``a,b,[1,2]`` -> ``['a', 'b', '[1,2]']``: commas inside brackets or quotes do not split."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def parse_axis(text: str) -> Axis:
    label, sep, values = text.partition("=")
    label = label.strip()
    if not sep or not label or any(not part for part in label.split(".")):
        raise ConfigError(f"--grid {text!r}: expected KEY=V1,V2,... with a dotted config key or a run flag name, e.g. train.lr=1e-4,5e-4")
    if label in ("seed", "train.seed"):
        raise ConfigError("--grid: give seeds with --seeds, not as a grid axis")
    parsed = split_values(values)
    if any(not v for v in parsed):
        raise ConfigError(f"--grid {text!r}: an empty value (two commas in a row, or a trailing comma)")
    if len(set(parsed)) != len(parsed):
        raise ConfigError(f"--grid {text!r}: a value is listed twice")
    return Axis(label, ALIASES.get(label, label), tuple(parsed))


def _short(key: str) -> str:
    return next((alias for alias, full in ALIASES.items() if full == key), key)


def grid_variants(axes: Sequence[Axis]) -> list[Variant]:
    """Every combination of the axes' values, the first axis varying slowest.

    A setting's name (and run folder) spells its keys the short way and in sorted order, so the
    same grid given in another order or spelling (``lr`` or ``train.lr``) resumes the same folders.
    """
    if not axes:
        raise ConfigError("nothing to sweep: give at least one --grid KEY=V1,V2,...")
    keys = [a.key for a in axes]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"--grid names {', '.join(twice)} more than once")
    variants = []
    for combo in itertools.product(*(a.values for a in axes)):
        pairs = sorted(zip((a.key for a in axes), combo, strict=True))
        name = " ".join(f"{_short(key)}={value}" for key, value in pairs)
        variants.append(Variant(name, tuple(f"{key}={value}" for key, value in pairs)))
    return variants


def _metric_interval(results: Sequence[PointResult], metric: str) -> stats.Interval | None:
    values = [r.metrics.summary(metric)[0] for r in results]
    known = [v for v in values if v is not None]
    return stats.t_interval(known) if known else None


def rank(
    variants: Sequence[Variant], by_variant: Mapping[str, Sequence[PointResult]], metric: str
) -> list[dict[str, Any]]:
    """Rows for the settings fitted so far, best first, each with its paired difference to the best."""
    done = [v for v in variants if by_variant.get(v.name)]
    scored = {v.name: _metric_interval(by_variant[v.name], metric) for v in done}
    order = sorted(done, key=lambda v: -(scored[v.name].mean if scored[v.name] is not None else float("-inf")))  # type: ignore[union-attr]
    if not order:
        return []
    best = order[0].name
    rows = []
    for place, variant in enumerate(order, 1):
        row = summarise(variant, by_variant[variant.name], by_variant[best], best, metric=metric)
        interval = scored[variant.name]
        row.update(rank=place, metric=metric, metric_interval=interval.as_dict() if interval is not None else None)
        rows.append(row)
    return rows


def markdown(rows: Sequence[Mapping[str, Any]], metric: str) -> str:
    label, _, digits = METRIC_LABELS[metric_key(metric)]
    lines = [
        f"| Rank | Setting | Params | {label}, 95% CI | vs best (paired) | Seconds | Seeds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        interval = r["metric_interval"]
        cell = "n/a" if interval is None else stats.Interval.from_dict(interval).format(digits)
        paired = r.get("vs_reference")
        versus = "(best)" if r["rank"] == 1 else stats.paired_cell(paired, digits)
        lines.append(
            f"| {r['rank']} | {r['method']} | {r['params']:,} | {cell} | {versus} | {r['seconds']:.1f} | {len(r['seeds'])} |"
        )
    return "\n".join(lines) + "\n"


def best_line(rows: Sequence[Mapping[str, Any]]) -> str:
    """The best setting, and whether the runner-up is resolved from it."""
    if not rows:
        return "no setting was fitted"
    best = rows[0]
    interval = best["metric_interval"]
    if interval is None:
        return f"no setting has a {best['metric']} score (no best setting)"
    text = f"best: {best['method']}"
    if interval is not None:
        half = interval["half_width"]
        text += f" ({interval['mean']:.3f}" + ("" if half is None else f" ± {half:.3f}") + f" over {len(best['seeds'])} seed(s))"
    if len(rows) > 1:
        paired = rows[1].get("vs_reference")
        if paired and paired.get("unit") == "items":
            text += "; it shares one seed with the runner-up, too few to say whether they differ (use --seeds)"
        elif paired and paired.get("half_width") is not None:
            resolved = abs(paired["mean"]) > paired["half_width"]
            text += "; the runner-up is " + ("resolved from it" if resolved else "within the interval of it (not resolved)")
    return text


def sweep(
    base: Mapping[str, Any],
    axes: Sequence[Axis],
    out: str | Path | None,
    *,
    seeds: Sequence[int] | None = None,
    metric: str = "psnr",
    progress: bool = False,
    on_note: Callable[[str], None] | None = None,
    on_point: Callable[[PointResult], None] | None = None,
    on_failed: Callable[[experiments.FailedPoint], None] | None = None,
    retry_failed: bool = False,
) -> tuple[Path, list[dict[str, Any]]]:
    """Fit the grid × seeds into ``out`` (resuming it), writing ``sweep.json`` and ``sweep.md``
    after every point; returns the folder and the ranked rows. A setting that fails (diverges)
    at some seed is listed under the table, and the sweep goes on."""
    metric = metric_key(metric)
    variants = grid_variants(axes)
    rows: list[dict[str, Any]] = []

    def write(folder: Path, done: experiments.Collected) -> None:
        rows[:] = rank(variants, done.by_variant, metric)
        summary = {
            "metric": metric, "seeds": list(seeds) if seeds is not None else None,
            "grid": {a.label: list(a.values) for a in axes}, "best": best_line(rows), "rows": rows,
            "failed": done.failure_records(),
        }
        files.write_json(folder / SWEEP_JSON, summary)
        text = markdown(rows, metric) + "\n" + best_line(rows) + "\n" + experiments.failure_lines(done.failures)
        files.write_text(folder / SWEEP_MD, text)

    folder, _ = experiments.run_collecting(
        base, experiments.points(variants, seeds), out, "sweep", write, progress=progress, on_note=on_note,
        on_point=on_point, on_failed=on_failed, retry_failed=retry_failed,
    )
    return folder, rows
