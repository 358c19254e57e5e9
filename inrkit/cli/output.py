"""What the commands print: metric tables, one line per fitted point, warnings about failed points."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from inrkit.results import RunMetrics
    from inrkit.runs.fit import FitResult

def fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def pm(mean: float | None, std: float | None, digits: int) -> str:
    return "n/a" if mean is None else f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def print_metrics_table(metrics: RunMetrics, run_dir: Any) -> None:
    # PSNR, SSIM, MS-SSIM, then any reference figures a signal adds (super-resolution: bicubic_psnr, ...);
    # a score no item has (MS-SSIM of small images, SSIM of a video) is left out, MS-SSIM with a line saying why.
    names = metrics.metric_names()
    keys = [k for k in names if k == "psnr" or any(item.scores().get(k) is not None for item in metrics.items)]
    digits = {k: 4 if "ssim" in k else 2 for k in keys}
    titles = {"psnr": "PSNR (dB)", "ssim": "SSIM", "ms_ssim": "MS-SSIM"}
    rows = [
        (item.name, "x".join(str(s) for s in item.shape), *(fmt(item.scores().get(k), digits[k]) for k in keys))
        for item in metrics.items
    ]
    summaries = [metrics.summary(k) for k in keys]
    mean = ("mean ± std", "", *(pm(m, s, digits[k]) for k, (m, s) in zip(keys, summaries, strict=True)))
    header = ("item", "size", *(titles.get(k, k) for k in keys))
    widths = [max(len(r[i]) for r in [header, mean, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    click.echo(line(header))
    click.echo("  ".join("-" * w for w in widths))
    for row in rows:
        click.echo(line(row))
    click.echo("  ".join("-" * w for w in widths))
    click.echo(line(mean))
    click.echo(f"PSNR of the mean MSE: {fmt(metrics.psnr_of_mean_mse, 2)} dB (the mean above averages the items' PSNRs)")
    if "ms_ssim" in names and "ms_ssim" not in keys:
        click.echo("MS-SSIM: n/a (defined for images of at least 161 pixels on the shorter side)")
    p = metrics.params
    click.echo(f"params: total {p.total:,} · shared {p.shared:,} · per item {p.per_item:,}")
    click.echo(
        f"{metrics.activation} + {metrics.sharing}: {metrics.steps} steps in "
        f"{metrics.seconds:.1f} s on {metrics.device} (lr {metrics.lr:g})"
    )
    if run_dir is not None:
        click.echo(f"run folder: {run_dir}")


def report_fit(result: FitResult, as_json: bool) -> None:
    """Print a fit's metrics (JSON or the table); other ranks of a distributed run print nothing."""
    if not result.is_main or result.metrics is None:
        return
    if as_json:
        click.echo(json.dumps(result.metrics.to_dict(), indent=2))
    else:
        print_metrics_table(result.metrics, result.run_dir)


def point_line(result: Any) -> str:
    seed = "" if result.point.seed is None else f" seed {result.point.seed}"
    how = " (already fitted)" if result.reused else f", {result.metrics.seconds:.1f} s"
    return f"{result.point.variant.name}{seed}: {fmt(result.metrics.psnr_mean, 2)} dB{how}"


def warn_failed(failure: Any) -> None:
    seed = "" if failure.point.seed is None else f" seed {failure.point.seed}"
    click.echo(f"Warning: {failure.point.variant.name}{seed} failed and is left out: {failure.error}", err=True)
