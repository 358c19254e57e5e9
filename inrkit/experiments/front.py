"""Quality against parameter count at matched budgets: ``inrkit front``.

The MINR paper compares sharing strategies at the same *width*; its claim is quality per
*parameter*. ``front`` fixes parameter budgets instead: for each method and budget it takes the
widest network whose exact parameter count (for these items) is at most the budget, fits it at
every seed, and draws PSNR against parameters with 95% intervals. Each point also gets its paired
difference to the first method at the same budget (same items, same seeds).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from inrkit import api, files
from inrkit.config import ResolvedRun
from inrkit.errors import ConfigError
from inrkit.experiments import runner as experiments
from inrkit.experiments import stats
from inrkit.experiments.compare import summarise
from inrkit.experiments.runner import PointResult, Variant

FRONT_JSON = "front.json"
FRONT_MD = "front.md"
FRONT_PNG = "front.png"
#: Widest network considered when matching a budget.
MAX_WIDTH = 4096
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")


def parse_budget(text: str) -> int:
    """``5k`` -> 5000, ``1.5M`` -> 1500000, ``20000`` -> 20000."""
    match = _BUDGET.match(text)
    if not match:
        raise ConfigError(f"--params {text!r}: expected a count such as 20000, 20k or 1.5M")
    value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]
    if value < 1 or value > 1e12:
        raise ConfigError(f"--params {text!r}: a budget must lie between 1 and 10^12 parameters")
    return int(value)


def parse_budgets(text: str) -> list[int]:
    budgets = [parse_budget(part) for part in text.split(",") if part.strip()]
    if not budgets:
        raise ConfigError("--params: give at least one budget, e.g. 5k,10k,20k")
    return sorted(set(budgets))


@dataclasses.dataclass(frozen=True)
class Match:
    """The widest network of a method within a budget."""

    method: str
    budget: int
    width: int
    params: int


class ParameterCounter:
    """Exact parameter counts of a method's model for the run's items, at any width
    (:func:`inrkit.parameter_counts`, on the meta device). The items are loaded once, for their
    number and shapes."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from inrkit.runs.fit import load_items

        resolved = ResolvedRun(api.as_config(config))
        resolved.config = resolved.normalized_config()
        items = load_items(resolved)
        self.item_shapes = [tuple(resolved.signal.train_view(it).shape[:-1]) for it in items]
        self.channels = items[0].channels

    def count(self, config: Mapping[str, Any], width: int) -> int:
        sized = experiments.config_for(config, [f"model.width={width}"])
        return api.parameter_counts(
            sized, n_items=len(self.item_shapes), item_shapes=self.item_shapes, channels=self.channels,
        ).total


def match_width(count: Callable[[int], int], budget: int, method: str) -> Match:
    """The largest width whose count is at most ``budget`` (counts grow with width: bisection)."""
    smallest = count(1)
    if smallest > budget:
        raise ConfigError(
            f"--params {budget:,}: even width 1 of {method!r} has {smallest:,} parameters for these items; "
            "give a larger budget"
        )
    low, high = 1, MAX_WIDTH
    if count(high) <= budget:
        return Match(method, budget, high, count(high))
    while high - low > 1:  # count(low) <= budget < count(high)
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) <= budget else (low, mid)
    return Match(method, budget, low, count(low))


def matches(base: Mapping[str, Any], methods: Sequence[Variant], budgets: Sequence[int]) -> list[Match]:
    """Every method's widest width within every budget, counted for the items each method fits
    (a method whose assignments change the data or the signal is counted on its own items)."""
    counters: dict[str, ParameterCounter] = {}
    found: list[Match] = []
    for method in methods:
        config = experiments.config_for(base, method.assignments)
        items_key = json.dumps([config.get("data"), config.get("signal")], sort_keys=True, default=str)
        if items_key not in counters:
            counters[items_key] = ParameterCounter(config)
        counter = counters[items_key]
        cache: dict[int, int] = {}

        def count(width: int, config: Mapping[str, Any] = config, cache: dict[int, int] = cache,
                  counter: ParameterCounter = counter) -> int:
            if width not in cache:
                cache[width] = counter.count(config, width)
            return cache[width]

        found.extend(match_width(count, budget, method.name) for budget in budgets)
    return found


def _variant(method: Variant, width: int) -> Variant:
    return Variant(f"{method.name} w{width}", method.assignments + (f"model.width={width}",))


def rows_for(
    methods: Sequence[Variant], found: Sequence[Match], by_variant: Mapping[str, Sequence[PointResult]]
) -> list[dict[str, Any]]:
    """One row per (method, budget) fitted so far, paired against the first method's point at the
    same budget."""
    widths = {(m.method, m.budget): m.width for m in found}
    by_name = {v.name: v for v in methods}
    first = methods[0]
    rows = []
    for match in found:
        method = by_name[match.method]
        variant = _variant(method, match.width)
        results = by_variant.get(variant.name)
        if not results:
            continue
        reference = by_variant.get(_variant(first, widths[(first.name, match.budget)]).name)
        row = summarise(variant, results, reference if method is not first else None, first.name if method is not first else None)
        row.update(method=method.name, budget=match.budget, width=match.width, setting=variant.name)
        rows.append(row)
    return rows


def markdown(rows: Sequence[Mapping[str, Any]], reference: str) -> str:
    """One row per budget and method: PSNR (the mean of the items' PSNRs, mean over seeds, with its
    interval), the PSNR of the items' mean MSE, MS-SSIM, and the paired PSNR difference."""
    lines = [
        f"| Budget | Method | Width | Params | PSNR (dB), 95% CI | PSNR of mean MSE (dB) | MS-SSIM | vs {reference} (paired) | Seeds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(rows, key=lambda r: (r["budget"], r["method"] != reference)):
        interval = r.get("psnr_interval")
        cell = (
            stats.Interval.from_dict(interval).format(2) if interval
            else "n/a" if r["psnr_mean"] is None else f"{r['psnr_mean']:.2f}"
        )
        paired = r.get("vs_reference")
        versus = "(reference)" if r["method"] == reference else stats.paired_cell(paired)
        lines.append(
            f"| {r['budget']:,} | {r['method']} | {r['width']} | {r['params']:,} | {cell} | {_fmt(r.get('psnr_of_mean_mse'), 2)} | "
            f"{_fmt(r.get('ms_ssim_mean'), 4)} | {versus} | {len(r['seeds'])} |"
        )
    return "\n".join(lines) + "\n"


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def plot(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """PSNR against parameters (log axis), one line per method, 95% intervals as error bars."""
    from inrkit.runs.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method and r["psnr_mean"] is not None), key=lambda r: r["params"])
        errors = [((r.get("psnr_interval") or {}).get("half_width") or 0.0) for r in mine]
        ax.errorbar([r["params"] for r in mine], [r["psnr_mean"] for r in mine], yerr=errors, marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("parameters (all items)")
    ax.set_ylabel("PSNR (dB), mean over seeds, 95% CI")
    if rows:
        ax.set_title(f"{rows[0]['items']} items, {len(rows[0]['seeds'])} seed(s) per point", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def front(
    base: Mapping[str, Any],
    methods: Sequence[Variant],
    budgets: Sequence[int],
    out: str | Path | None,
    *,
    seeds: Sequence[int] | None = None,
    progress: bool = False,
    on_note: Callable[[str], None] | None = None,
    on_match: Callable[[Match], None] | None = None,
    on_point: Callable[[PointResult], None] | None = None,
    on_failed: Callable[[experiments.FailedPoint], None] | None = None,
    retry_failed: bool = False,
    plots: bool = True,
) -> tuple[Path, list[dict[str, Any]]]:
    """Match every method to every budget, fit the matched widths × seeds into ``out`` (resuming
    it), and write ``front.json``, ``front.md`` and ``front.png``; returns the folder and rows."""
    if not methods:
        raise ConfigError("nothing to compare: give --sharing NAME[,NAME...] and/or --variant NAME:KEY=VALUE")
    if not budgets:
        raise ConfigError("--params: give at least one budget")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"method names must differ: {', '.join(names)}")
    found = matches(base, methods, budgets)
    for match in found:
        if on_match is not None:
            on_match(match)
    by_name = {v.name: v for v in methods}
    variants = list(dict.fromkeys(_variant(by_name[m.method], m.width) for m in found))
    rows: list[dict[str, Any]] = []

    def write(folder: Path, done: experiments.Collected) -> None:
        rows[:] = rows_for(methods, found, done.by_variant)
        summary = {
            "reference": names[0], "seeds": list(seeds) if seeds is not None else None,
            "matches": [dataclasses.asdict(m) for m in found], "rows": rows, "failed": done.failure_records(),
        }
        files.write_json(folder / FRONT_JSON, summary)
        files.write_text(folder / FRONT_MD, markdown(rows, names[0]) + experiments.failure_lines(done.failures))

    folder, collected = experiments.run_collecting(
        base, experiments.points(variants, seeds), out, "front", write, progress=progress, on_note=on_note,
        on_point=on_point, on_failed=on_failed, retry_failed=retry_failed,
    )
    results = [r for runs in collected.by_variant.values() for r in runs]
    trained = {(r.point.variant.name): r.metrics.params.total for r in results}
    for match in found:  # the count matched must be the model trained (a strategy may count otherwise)
        name = _variant(by_name[match.method], match.width).name
        if name in trained and trained[name] != match.params and on_note is not None:
            on_note(f"{name}: matched at {match.params:,} parameters but trained {trained[name]:,}")
    if plots and rows:
        plot(rows, folder / FRONT_PNG)
    return folder, rows


def fraction(match: Match) -> str:
    """How much of its budget a match uses, for the printed line."""
    return f"{100 * match.params / match.budget:.1f}%" if match.budget else "n/a"


__all__ = ["Match", "front", "match_width", "matches", "parse_budget", "parse_budgets", "plot"]
