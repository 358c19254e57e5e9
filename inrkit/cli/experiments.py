"""Many fits of one base config: ``inrkit compare``, ``sweep`` and ``front``."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from inrkit.cli.options import (
    SEEDS_HELP,
    build_config_dict,
    common_run_options,
    note,
    parse_seeds,
    retry_option,
    sharing_list,
)
from inrkit.cli.output import fmt, point_line, warn_failed

#: ``--metric`` choices (as :data:`inrkit.experiments.compare.METRICS` spells them; kept here so that
#: rendering the help imports no experiment code).
METRIC_CHOICES = ["psnr", "ssim", "ms-ssim"]


def _methods(sharing_names: list[str], variant_texts: tuple[str, ...]) -> list[Any]:
    from inrkit.experiments import compare as comparison

    return comparison.sharing_variants(sharing_names) + [comparison.parse_variant(t) for t in variant_texts]


@click.command()
@common_run_options(sharing=False)
@click.option("--sharing", "sharing_names", callback=sharing_list, metavar="NAME[,NAME...]", help="Sharing strategies to compare, e.g. separate,minr,row,column,grid,id,coinpp.")
@click.option("--variant", "variant_texts", multiple=True, metavar="NAME:KEY=VALUE[,...]", help="An extra row: a name and --set assignments, e.g. 'w/o projection:sharing.projection=false' (repeatable).")
@click.option("--seeds", callback=parse_seeds, metavar="S[,S...]", help=SEEDS_HELP)
@click.option("--reference", metavar="METHOD", help="Method to pair every other against (same items, same seed) [default: the first, with --seeds].")
@click.option("--metric", type=click.Choice(METRIC_CHOICES), default="psnr", show_default=True, help="Metric of the paired column (the table shows all of them).")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for table.md, table.json and one run folder per method: new, empty, or an interrupted compare to resume [default: runs/<time>-compare].")
@retry_option
@click.option("--json", "as_json", is_flag=True, help="Print table.json instead of the table.")
def compare(
    config_file: str | None,
    assignments: tuple[str, ...],
    progress: bool | None,
    sharing_names: list[str],
    variant_texts: tuple[str, ...],
    seeds: list[int] | None,
    reference: str | None,
    metric: str,
    out: str | None,
    retry_failed: bool,
    as_json: bool,
    **flags: Any,
) -> None:
    """Fit several methods on the same items and budget; write the paper-style table.

    With --seeds, each method is fitted once per seed and compared with the reference method
    on the same items and seeds (mean difference and its 95% t-interval over seeds).
    """
    from inrkit.experiments import compare as comparison

    base = build_config_dict(config_file, flags, assignments)
    if progress is None:
        progress = sys.stderr.isatty()

    def report(row: dict[str, Any]) -> None:
        if not as_json:
            click.echo(f"{row['method']}: {fmt(row['psnr_mean'], 2)} dB, {row['params']:,} params, {row['seconds']:.1f} s", err=True)

    rows = comparison.compare(
        base, _methods(sharing_names, variant_texts), out or None, seeds=seeds, reference=reference, metric=metric,
        progress=progress, on_note=note, on_row=report, on_failed=warn_failed, retry_failed=retry_failed,
    )
    from inrkit.training.distributed import is_main_process

    if not is_main_process():
        return  # another rank of a distributed run: rank 0 reports
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(comparison.markdown_table(rows), nl=False)


@click.command()
@common_run_options()
@click.option("--grid", "grid_texts", multiple=True, required=True, metavar="KEY=V1,V2,...", help="One axis of the grid: a dotted config key (or width, layers, steps, lr, activation, sharing, signal) and its values (repeatable).")
@click.option("--seeds", callback=parse_seeds, metavar="S[,S...]", help=SEEDS_HELP)
@click.option("--metric", type=click.Choice(METRIC_CHOICES), default="psnr", show_default=True, help="Metric that ranks the settings.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for sweep.md, sweep.json and one run folder per point: new, empty, or an interrupted sweep to resume [default: runs/<time>-sweep].")
@retry_option
@click.option("--json", "as_json", is_flag=True, help="Print sweep.json instead of the table.")
def sweep(
    config_file: str | None, assignments: tuple[str, ...], progress: bool | None, grid_texts: tuple[str, ...],
    seeds: list[int] | None, metric: str, out: str | None, retry_failed: bool, as_json: bool, **flags: Any,
) -> None:
    """Fit a grid of settings × seeds and rank the settings with 95% intervals.

    Each setting is compared with the best one on the same seeds and items (paired). Given the
    same --out again, finished points are read back instead of refitted.
    """
    from inrkit.experiments import sweep as sweeping

    base = build_config_dict(config_file, flags, assignments)
    axes = [sweeping.parse_axis(t) for t in grid_texts]
    if progress is None:
        progress = sys.stderr.isatty()
    folder, rows = sweeping.sweep(
        base, axes, out or None, seeds=seeds, metric=metric, progress=progress, on_note=note,
        on_point=None if as_json else lambda r: click.echo(point_line(r), err=True),
        on_failed=warn_failed, retry_failed=retry_failed,
    )
    from inrkit.training.distributed import is_main_process

    if not is_main_process():
        return
    if as_json:
        click.echo((folder / sweeping.SWEEP_JSON).read_text())
    else:
        click.echo(sweeping.markdown(rows, metric) + "\n" + sweeping.best_line(rows))


@click.command()
@common_run_options(sharing=False)
@click.option("--sharing", "sharing_names", callback=sharing_list, metavar="NAME[,NAME...]", help="Sharing strategies to compare, e.g. separate,minr; the first is the reference.")
@click.option("--variant", "variant_texts", multiple=True, metavar="NAME:KEY=VALUE[,...]", help="An extra method: a name and --set assignments (repeatable).")
@click.option("--params", "budget_text", required=True, metavar="N[,N...]", help="Parameter budgets for all items together, e.g. 5k,10k,20k,40k.")
@click.option("--seeds", callback=parse_seeds, metavar="S[,S...]", help=SEEDS_HELP)
@click.option("--out", type=click.Path(file_okay=False), help="Folder for front.md, front.json, front.png and the run folders: new, empty, or an interrupted front to resume [default: runs/<time>-front].")
@retry_option
@click.option("--json", "as_json", is_flag=True, help="Print front.json instead of the table.")
@click.option("--plots/--no-plots", default=None, help="Draw front.png [default: on unless INRKIT_PLOTS=0].")
def front(
    config_file: str | None, assignments: tuple[str, ...], progress: bool | None, sharing_names: list[str],
    variant_texts: tuple[str, ...], budget_text: str, seeds: list[int] | None, out: str | None,
    retry_failed: bool, as_json: bool, plots: bool | None, **flags: Any,
) -> None:
    """Compare methods at equal parameter budgets: PSNR against parameters, with intervals.

    For each method and budget the widest network with at most that many parameters (for these
    items) is chosen and printed, then fitted at every seed.
    """
    from inrkit.errors import ConfigError
    from inrkit.experiments import front as fronts

    if flags.get("width") is not None:
        raise ConfigError("front chooses each method's width from --params; drop --width")
    base = build_config_dict(config_file, flags, assignments)
    budgets = fronts.parse_budgets(budget_text)
    if progress is None:
        progress = sys.stderr.isatty()
    if plots is None:
        plots = os.environ.get("INRKIT_PLOTS", "1") != "0"

    def matched(m: Any) -> None:
        if not as_json:
            click.echo(f"{m.method} within {m.budget:,}: width {m.width}, {m.params:,} params ({fronts.fraction(m)} of the budget)", err=True)

    methods = _methods(sharing_names, variant_texts)
    folder, rows = fronts.front(
        base, methods, budgets, out or None, seeds=seeds, progress=progress,
        on_note=note, on_match=matched, on_point=None if as_json else lambda r: click.echo(point_line(r), err=True),
        on_failed=warn_failed, retry_failed=retry_failed, plots=plots,
    )
    from inrkit.training.distributed import is_main_process

    if not is_main_process():
        return
    if as_json:
        click.echo((folder / fronts.FRONT_JSON).read_text())
    else:
        click.echo(fronts.markdown(rows, methods[0].name) + f"\nwritten to {folder}")


COMMANDS = [compare, sweep, front]
