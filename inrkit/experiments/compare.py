"""Fit several methods on the same items with the same budget and tabulate them (the paper's tables).

Each method is a *variant*: a name plus ``--set``-style assignments applied on top of the common
run configuration, e.g. ``w/o projection:sharing.projection=false``. ``--sharing a,b`` is
shorthand for variants ``a:sharing.name=a`` and ``b:sharing.name=b``. With ``seeds`` every
variant is fitted once per seed (``OUT/<variant>/seed-<n>/``); the table then gives each method's
mean ± std over seeds and its paired difference to a reference method (same items, same seed)
with a 95% interval (:mod:`inrkit.experiments.stats`), in PSNR unless ``metric`` says otherwise.
The table gives PSNR both as the mean of the items' PSNRs (the paper's average, the headline) and
as the PSNR of their mean squared error, with SSIM and MS-SSIM. ``table.md`` (the layout of the paper's Table I) and
``table.json`` are rewritten after each fit, and the same ``--out`` resumes an interrupted
comparison (:mod:`inrkit.experiments.runner`).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from inrkit import files
from inrkit.errors import ConfigError
from inrkit.experiments import runner as experiments
from inrkit.experiments import stats
from inrkit.experiments.runner import PointResult, Variant

__all__ = [
    "METRICS", "Variant", "compare", "markdown_table", "metric_key", "parse_variant", "sharing_variants", "summarise",
    "variant_config",
]

#: Per-item scores a comparison or a sweep can pair and rank by, as the CLI spells them -> their key.
METRICS = {"psnr": "psnr", "ssim": "ssim", "ms-ssim": "ms_ssim"}
#: How a metric's values are shown: label, unit of a difference, digits.
METRIC_LABELS = {"psnr": ("PSNR (dB)", "dB", 2), "ssim": ("SSIM", "SSIM", 4), "ms_ssim": ("MS-SSIM", "MS-SSIM", 4)}


def metric_key(name: str) -> str:
    """A metric as the CLI or the API names it (``psnr``, ``ssim``, ``ms-ssim``/``ms_ssim``) -> its score key."""
    key = METRICS.get(name, name)
    if key not in METRICS.values():
        raise ConfigError(f"--metric {name!r}: choose one of {', '.join(METRICS)}")
    return key

TABLE_MD = "table.md"
TABLE_JSON = "table.json"
_SPLIT = re.compile(r",(?=\s*[A-Za-z_][\w.]*\s*=)")  # commas that start a new KEY=VALUE


def parse_variant(text: str) -> Variant:
    """``NAME:KEY=VALUE,KEY=VALUE`` (values may hold commas, as in ``[3,4]``)."""
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep or not name:
        raise ConfigError(f"--variant {text!r}: expected NAME:KEY=VALUE[,KEY=VALUE...]")
    assignments = tuple(part.strip() for part in _SPLIT.split(rest) if part.strip())
    if not assignments:
        raise ConfigError(f"--variant {text!r}: no KEY=VALUE assignments after the name")
    for assignment in assignments:
        if "=" not in assignment:
            raise ConfigError(f"--variant {text!r}: {assignment!r} is not KEY=VALUE")
    return Variant(name, assignments)


def sharing_variants(names: Sequence[str]) -> list[Variant]:
    return [Variant(name, (f"sharing.name={name}",)) for name in names]


def variant_config(base: Mapping[str, Any], variant: Variant) -> dict[str, Any]:
    """The base config with the variant's assignments (see :func:`inrkit.experiments.runner.config_for`)."""
    return experiments.config_for(base, variant.assignments)


def _scores(results: Sequence[PointResult], metric: str) -> dict[int, dict[str, float]]:
    return {int(r.point.seed or 0): r.item_scores(metric) for r in results}


def summarise(
    variant: Variant, results: Sequence[PointResult], reference: Sequence[PointResult] | None = None,
    reference_name: str | None = None, metric: str = "psnr",
) -> dict[str, Any]:
    """One table row: a method's runs (one per seed) summarised, with its paired difference in
    ``metric`` to the reference method's runs when given (items without a score, such as a
    perfect fit's infinite PSNR, are left out of the pairing)."""
    metric = metric_key(metric)
    first = results[0].metrics
    psnr = [r.metrics.psnr_mean for r in results if r.metrics.psnr_mean is not None]
    pooled = [r.metrics.psnr_of_mean_mse for r in results if r.metrics.psnr_of_mean_mse is not None]
    ssim = [r.metrics.ssim_mean for r in results if r.metrics.ssim_mean is not None]
    ms_ssim = [m for m in (r.metrics.summary("ms_ssim")[0] for r in results) if m is not None]
    several = len(results) > 1
    row: dict[str, Any] = {
        "method": variant.name,
        "sharing": first.sharing,
        "activation": first.activation,
        "assignments": list(variant.assignments),
        "params": first.params.total,
        "params_shared": first.params.shared,
        "params_per_item": first.params.per_item,
        # One seed: mean ± std over the items (as a single run reports). Several: over the seeds.
        "psnr_mean": statistics.fmean(psnr) if psnr else None,
        "psnr_std": (statistics.stdev(psnr) if len(psnr) > 1 else None) if several else first.psnr_std,
        "psnr_of_mean_mse": statistics.fmean(pooled) if len(pooled) == len(results) else None,
        "ssim_mean": statistics.fmean(ssim) if ssim else None,
        "ssim_std": (statistics.stdev(ssim) if len(ssim) > 1 else None) if several else first.ssim_std,
        "ms_ssim_mean": statistics.fmean(ms_ssim) if len(ms_ssim) == len(results) else None,
        "ms_ssim_std": ((statistics.stdev(ms_ssim) if len(ms_ssim) > 1 else None) if several else first.summary("ms_ssim")[1])
        if len(ms_ssim) == len(results) else None,
        "spread": "seeds" if several else "items",
        "psnr_interval": stats.t_interval(psnr).as_dict() if len(psnr) > 1 else None,
        "seconds": statistics.fmean(r.metrics.seconds for r in results),
        "steps": first.steps,
        "items": len(first.items),
        "seeds": [r.point.seed for r in results],
        "run_dir": results[0].point.folder,
        "runs": [
            {
                "seed": r.point.seed, "run_dir": r.point.folder, "psnr_mean": r.metrics.psnr_mean,
                "psnr_of_mean_mse": r.metrics.psnr_of_mean_mse, "ssim_mean": r.metrics.ssim_mean,
                "ms_ssim_mean": r.metrics.summary("ms_ssim")[0], "seconds": r.metrics.seconds, "psnr": r.item_scores("psnr"),
            }
            for r in results
        ],
    }
    if reference is not None and reference_name is not None and reference_name != variant.name:
        paired = stats.paired_difference(_scores(results, metric), _scores(reference, metric))
        row["reference"] = reference_name
        row["vs_reference"] = paired.as_dict() if paired is not None else None
        row["paired_metric"] = metric
    return row


def _pm(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def _millions(params: int) -> str:
    return f"{params / 1e6:.2f}" if params >= 10_000 else f"{params / 1e6:.4f}"


def _paired_cell(row: Mapping[str, Any], digits: int) -> str:
    paired = row.get("vs_reference")
    if row.get("reference") is None:
        return "(reference)"
    if paired is None:
        return "n/a"
    return stats.Interval.from_dict(paired).format(digits, signed=True)


def markdown_table(rows: Sequence[Mapping[str, Any]], failures: Sequence[experiments.FailedPoint] = ()) -> str:
    """The paper's Table I layout (PSNR as the mean of the items' PSNRs), with the PSNR of the
    mean MSE and MS-SSIM beside it; with seeds or a reference, the paired column and a legend."""
    reference = next((r["reference"] for r in rows if r.get("reference")), None)
    paired_metric = next((r["paired_metric"] for r in rows if r.get("paired_metric")), "psnr")
    _, unit, digits = METRIC_LABELS[paired_metric]
    seeded = any(len(r.get("seeds") or [None]) > 1 for r in rows)
    head = "| Method | Params (M) | PSNR (dB) | PSNR of mean MSE (dB) | SSIM | MS-SSIM | Seconds |"
    rule = "| --- | --- | --- | --- | --- | --- | --- |"
    if reference is not None:
        head += f" vs {reference} ({unit}, paired) |"
        rule += " --- |"
    if seeded or reference is not None:
        head += " Seeds |"
        rule += " --- |"
    lines = [head, rule]
    for r in rows:
        line = (
            f"| {r['method']} | {_millions(r['params'])} | {_pm(r['psnr_mean'], r['psnr_std'], 2)} | "
            f"{_pm(r.get('psnr_of_mean_mse'), None, 2)} | {_pm(r['ssim_mean'], r['ssim_std'], 2)} | "
            f"{_pm(r.get('ms_ssim_mean'), r.get('ms_ssim_std'), 4)} | {r['seconds']:.1f} |"
        )
        if reference is not None:
            line += f" {_paired_cell(r, digits)} |"
        if seeded or reference is not None:
            line += f" {len(r.get('seeds') or [None])} |"
        lines.append(line)
    text = "\n".join(lines) + "\n"
    notes = []
    if any(r.get("ms_ssim_mean") is None for r in rows):
        notes.append("MS-SSIM is n/a where an image's shorter side is under 161 pixels (or the signal is not an image)")
    if seeded or reference is not None:
        units = {str(r["vs_reference"]["unit"]) for r in rows if r.get("vs_reference")}
        text += (
            "\n± is the standard deviation over " + ("seeds" if seeded else "the items")
            + (
                f"; the paired column is the mean {METRIC_LABELS[paired_metric][1]} difference to {reference} on the same items and seed, "
                f"± the half-width of its 95% t-interval over {' and '.join(sorted(units)) or 'seeds'}"
                if reference is not None else ""
            )
            + ".\n"
        )
    if notes:
        text += ("\n" if not (seeded or reference is not None) else "") + "".join(f"{n}.\n" for n in notes)
    return text + experiments.failure_lines(failures)


def compare(
    base: Mapping[str, Any],
    variants: Sequence[Variant],
    out: str | Path | None,
    *,
    seeds: Sequence[int] | None = None,
    reference: str | None = None,
    metric: str = "psnr",
    progress: bool = False,
    on_note: Callable[[str], None] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_failed: Callable[[experiments.FailedPoint], None] | None = None,
    retry_failed: bool = False,
) -> list[dict[str, Any]]:
    """Fit every variant of ``base`` (at every seed) into ``out`` and write the tables; returns
    the rows. ``reference`` (a variant name; with seeds, the first variant by default) adds each
    method's paired difference to it, in ``metric`` (``psnr``, ``ssim`` or ``ms-ssim``). An ``out`` written by an earlier, interrupted ``compare``
    with the same base config is resumed; a fit that fails (diverges) is listed under the table and
    the others go on (see :func:`inrkit.experiments.runner.run`)."""
    metric = metric_key(metric)
    if not variants:
        raise ConfigError("nothing to compare: give --sharing NAME[,NAME...] and/or --variant NAME:KEY=VALUE")
    names = [v.name for v in variants]
    if reference is None and seeds is not None and len(variants) > 1:
        reference = names[0]
    if reference is not None and reference not in names:
        raise ConfigError(f"--reference {reference!r} is not one of the compared methods: {', '.join(names)}")
    rows: list[dict[str, Any]] = []
    fits_per_method = len(seeds) if seeds is not None else 1

    def write(folder: Path, done: experiments.Collected) -> None:
        by_variant = done.by_variant
        ref = by_variant.get(reference) if reference is not None else None
        rows[:] = [summarise(v, by_variant[v.name], ref, reference, metric) for v in variants if v.name in by_variant]
        for row in rows:
            row["failed_seeds"] = [f.point.seed for f in done.failures if f.point.variant.name == row["method"]]
        files.write_json(folder / TABLE_JSON, rows)
        files.write_text(folder / TABLE_MD, markdown_table(rows, done.failures))

    def finished(result: PointResult) -> None:
        row = next(r for r in rows if r["method"] == result.point.variant.name)
        if on_row is not None and len(row["runs"]) == fits_per_method:
            on_row(row)

    experiments.run_collecting(
        base, experiments.points(variants, seeds), out, "compare", write, progress=progress, on_note=on_note,
        on_point=finished, on_failed=on_failed, retry_failed=retry_failed,
    )
    return rows
