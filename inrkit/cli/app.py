"""The ``inrkit`` command line: parse, call :mod:`inrkit.api`, print.

Importing this module loads no plugin (``inrkit --help`` always works); plugin names are checked
against the registry when an option is actually used.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from inrkit.errors import InrkitError, Terminated, TrainingInterrupted, one_line, signal_number
from inrkit.limits import MAX_BENCH_SIDE, MAX_LAYERS, MAX_WIDTH

if TYPE_CHECKING:
    from inrkit.results import RunMetrics
    from inrkit.runs.fit import FitResult

KINDS = ("activation", "sharing", "signal")


class UserError(click.ClickException):
    """An :class:`InrkitError` shown as one ``Error: <message>`` line with its exit code, no traceback."""

    def __init__(self, error: InrkitError) -> None:
        super().__init__(one_line(str(error)))
        setattr(self, "exit_code", error.exit_code)  # noqa: B010 - click declares it a class variable


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (``timeout``, job schedulers, ``docker stop``) unwinds like Ctrl-C: the trainer
    saves a snapshot and the command exits with 143. Later SIGTERMs are ignored meanwhile, so
    that the snapshot being written is not cut short."""
    signal.signal(signum, signal.SIG_IGN)
    raise Terminated(signum)


class InrkitGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:  # outside a fit's own handling: still one line and 128 + signal
            _mark_group_failed()
            signum = signal_number(exc)
            raise UserError(TrainingInterrupted(f"interrupted ({signal.Signals(signum).name})", signum)) from None
        except Exception as exc:
            _mark_group_failed()
            if isinstance(exc, InrkitError):
                raise UserError(exc) from None
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _mark_group_failed() -> None:
    # A process of a torchrun group that stops on an error must not wait for its peers at exit.
    # The group exists only if inrkit.training.distributed was imported.
    group_module = sys.modules.get("inrkit.training.distributed")
    if group_module is not None:
        group_module.mark_failed()


class PluginName(click.ParamType):
    """A plugin name checked against the registry at use, so choices come from installed plugins."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"{kind} name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from inrkit.plugins import get_registry

        try:
            get_registry().entry(self.kind, str(value))
        except InrkitError as exc:  # unknown, or registered twice: the registry's message says which
            self.fail(str(exc), param, ctx)
        return str(value)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        from inrkit.plugins import get_registry

        return [CompletionItem(n) for n in get_registry().names(self.kind) if n.startswith(incomplete)]


def _format_warning(message: Any, category: Any, filename: str, lineno: int, line: str | None = None) -> str:
    return f"Warning: {message}\n"


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``--version``: as ``click.version_option`` (eager, then exit), also naming torch and the device."""
    if not value or ctx.resilient_parsing:
        return
    from inrkit.tools.doctor import version_line

    click.echo(version_line(), color=ctx.color)
    ctx.exit()


@click.group(cls=InrkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
    help="Show the version (with torch's and the default device) and exit.",
)
def main() -> None:
    """Fit implicit neural representations to many signals at once (MINR and friends)."""
    warnings.formatwarning = _format_warning


def _plugin_section(data: dict[str, Any], kind: str, name: str | None) -> None:
    """Set a plugin name from a flag; options from a config file for another plugin are dropped."""
    from inrkit.config import DEFAULT_PLUGINS

    if name is None:
        return
    section = data.get(kind)
    if isinstance(section, dict) and section.get("name", DEFAULT_PLUGINS[kind]) == name:
        section["name"] = name
        return
    data[kind] = {"name": name}


def build_config_dict(
    config_file: str | None, flags: dict[str, Any], assignments: Sequence[str]
) -> dict[str, Any]:
    """Defaults < ``--config`` file < explicit flags < ``--set`` assignments."""
    from inrkit.config import apply_overrides, read_config_file

    data: dict[str, Any] = read_config_file(config_file) if config_file else {}
    for kind in KINDS:
        _plugin_section(data, kind, flags.get(kind))
    sources = list(flags.get("data") or ()) + list(flags.get("paths") or ())
    if sources:
        data["data"] = sources
    if flags.get("log"):
        train = data.setdefault("train", {})
        if isinstance(train, dict):
            listed = [c if isinstance(c, str) else c.get("name") if isinstance(c, dict) else None for c in train.get("callbacks") or []]
            train["callbacks"] = list(train.get("callbacks") or []) + [n for n in dict.fromkeys(flags["log"]) if n not in listed]
    for section, keys in (("model", ("width", "layers")), ("train", ("steps", "lr", "seed", "device", "compile", "precision"))):
        for key in keys:
            if flags.get(key) is not None:
                data.setdefault(section, {})
                if not isinstance(data[section], dict):
                    from inrkit.errors import ConfigError

                    raise ConfigError(f"config: {section!r} must be a table")
                data[section][key] = flags[key]
    return apply_overrides(data, assignments)


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pm(mean: float | None, std: float | None, digits: int) -> str:
    return "n/a" if mean is None else f"{_fmt(mean, digits)} ± {_fmt(std, digits)}"


def print_metrics_table(metrics: RunMetrics, run_dir: Any) -> None:
    # PSNR, SSIM, then any reference figures a signal adds (super-resolution: bicubic_psnr, ...).
    keys = metrics.metric_names()
    digits = {k: 4 if "ssim" in k else 2 for k in keys}
    titles = {"psnr": "PSNR (dB)", "ssim": "SSIM"}
    rows = [
        (item.name, "x".join(str(s) for s in item.shape), *(_fmt(item.scores().get(k), digits[k]) for k in keys))
        for item in metrics.items
    ]
    summaries = [metrics.summary(k) for k in keys]
    mean = ("mean ± std", "", *(_pm(m, s, digits[k]) for k, (m, s) in zip(keys, summaries, strict=True)))
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


log_option = click.option(
    "--log", "log", multiple=True, type=PluginName("callback"), metavar="NAME",
    help="Callback plugin watching the fit, e.g. tensorboard or jsonl (repeatable; adds to train.callbacks).",
)


def common_run_options(sharing: bool = True, width: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options ``run`` and ``compare`` share (``compare`` takes a list of strategies instead,
    ``rd`` lists of strategies and widths)."""
    options = [
        click.option("--activation", type=PluginName("activation"), help="Activation plugin [default: siren]."),
        click.option("--signal", type=PluginName("signal"), help="Signal plugin [default: image]."),
        click.option("--data", multiple=True, metavar="PATH", help="File, folder or glob (repeatable; paths after the options count too) [default: built-in samples]."),
        *([click.option("--width", type=int, help="Hidden width [default: 256].")] if width else []),
        click.option("--layers", type=int, help="Linear layers of one plain MLP, as the paper counts them [default: 5]."),
        click.option("--steps", type=int, help="Training steps, each over every point [default: 300; 100 for the samples demo]."),
        click.option("--lr", type=float, help="Adam learning rate [default: the activation's]."),
        click.option("--seed", type=int, help="Random seed [default: 0]."),
        click.option("--device", help="auto, cpu, cuda or cuda:N [default: auto]."),
        click.option("--compile/--no-compile", "compile", default=None, help="Compile the network with torch.compile before training [default: off]."),
        click.option("--precision", type=click.Choice(["fp32", "bf16"]), help="bf16 autocasts the hidden layers' products (for GPUs) [default: fp32]."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML, YAML or JSON run config."),
        click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Override a config value by dotted key, e.g. sharing.projection=false (repeatable)."),
        click.option("--progress/--no-progress", default=None, help="Show a progress bar [default: when stderr is a terminal]."),
        log_option,
    ]
    if sharing:
        options.insert(1, click.option("--sharing", type=PluginName("sharing"), help="Sharing strategy plugin [default: minr]."))
    # Paths after the options count as --data too, so `--data photos/*.png` works once the shell
    # has expanded the glob into many arguments.
    options.append(click.argument("paths", nargs=-1, type=click.Path()))

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _note(note: str) -> None:
    from inrkit.training.distributed import is_main_process

    if is_main_process():  # one note per run, not one per torchrun process
        click.echo(f"Note: {note}", err=True)


@main.command()
@common_run_options()
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (new or empty) [default: runs/<time>-<activation>-<sharing>].")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json instead of the table.")
@click.option("--plots/--no-plots", default=None, help="Draw training curves and reconstruction figures into <run>/plots [default: on unless INRKIT_PLOTS=0].")
@click.option("--resume", type=click.Path(file_okay=False), help="Continue an interrupted run folder from its last snapshot.")
def run(
    config_file: str | None, assignments: tuple[str, ...], as_json: bool, progress: bool | None, plots: bool | None,
    out: str | None, resume: str | None, **flags: Any,
) -> None:
    """Fit INRs to the items of a signal and write a run folder.

    With no arguments: MINR with SIREN on four built-in sample images.
    """
    from inrkit import api
    from inrkit.errors import ConfigError

    if progress is None:
        progress = sys.stderr.isatty()
    if plots is None:
        plots = os.environ.get("INRKIT_PLOTS", "1") != "0"
    if resume is not None:
        given = [k for k, v in flags.items() if v not in (None, ())] + (["--config"] if config_file else [])
        if given or assignments or out:
            raise ConfigError("--resume continues a run with its own config; give no other run options")
        result = api.fit(resume=resume, progress=progress, on_note=_note, plots=plots)
    else:
        config = api.as_config(build_config_dict(config_file, flags, assignments))
        result = api.fit(config, out=out, progress=progress, on_note=_note, plots=plots)
    report_fit(result, as_json)


def _sharing_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    if not value:
        return []
    names = [v.strip() for v in value.split(",") if v.strip()]
    kind = PluginName("sharing")
    return [kind.convert(name, param, ctx) for name in names]


def _seeds(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        seeds = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected seeds such as 0,1,2 (got {value!r})") from None
    if not seeds or any(s < 0 for s in seeds):
        raise click.BadParameter(f"expected non-negative seeds such as 0,1,2 (got {value!r})")
    if len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"a seed is listed twice in {value!r}")
    return seeds


_SEEDS_HELP = "Fit every point once per seed, e.g. 0,1,2 (overrides --seed); tables then give means over seeds with 95% intervals."


_retry_option = click.option("--retry-failed", is_flag=True, help="Fit again the points that failed (diverged) in an earlier run of this --out [default: skip them].")


def _failed(failure: Any) -> None:
    seed = "" if failure.point.seed is None else f" seed {failure.point.seed}"
    click.echo(f"Warning: {failure.point.variant.name}{seed} failed and is left out: {failure.error}", err=True)


def _methods(sharing_names: list[str], variant_texts: tuple[str, ...]) -> list[Any]:
    from inrkit.experiments import compare as comparison

    return comparison.sharing_variants(sharing_names) + [comparison.parse_variant(t) for t in variant_texts]


@main.command()
@common_run_options(sharing=False)
@click.option("--sharing", "sharing_names", callback=_sharing_list, metavar="NAME[,NAME...]", help="Sharing strategies to compare, e.g. separate,minr,row,column,grid,id,coinpp.")
@click.option("--variant", "variant_texts", multiple=True, metavar="NAME:KEY=VALUE[,...]", help="An extra row: a name and --set assignments, e.g. 'w/o projection:sharing.projection=false' (repeatable).")
@click.option("--seeds", callback=_seeds, metavar="S[,S...]", help=_SEEDS_HELP)
@click.option("--reference", metavar="METHOD", help="Method to pair every other against (same items, same seed) [default: the first, with --seeds].")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for table.md, table.json and one run folder per method: new, empty, or an interrupted compare to resume [default: runs/<time>-compare].")
@_retry_option
@click.option("--json", "as_json", is_flag=True, help="Print table.json instead of the table.")
def compare(
    config_file: str | None,
    assignments: tuple[str, ...],
    progress: bool | None,
    sharing_names: list[str],
    variant_texts: tuple[str, ...],
    seeds: list[int] | None,
    reference: str | None,
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
            click.echo(f"{row['method']}: {_fmt(row['psnr_mean'], 2)} dB, {row['params']:,} params, {row['seconds']:.1f} s", err=True)

    rows = comparison.compare(
        base, _methods(sharing_names, variant_texts), out or None, seeds=seeds, reference=reference,
        progress=progress, on_note=_note, on_row=report, on_failed=_failed, retry_failed=retry_failed,
    )
    from inrkit.training.distributed import is_main_process

    if not is_main_process():
        return  # another rank of a distributed run: rank 0 reports
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(comparison.markdown_table(rows), nl=False)


def _point_line(result: Any) -> str:
    seed = "" if result.point.seed is None else f" seed {result.point.seed}"
    how = " (already fitted)" if result.reused else f", {result.metrics.seconds:.1f} s"
    return f"{result.point.variant.name}{seed}: {_fmt(result.metrics.psnr_mean, 2)} dB{how}"


@main.command()
@common_run_options()
@click.option("--grid", "grid_texts", multiple=True, required=True, metavar="KEY=V1,V2,...", help="One axis of the grid: a dotted config key (or width, layers, steps, lr, activation, sharing, signal) and its values (repeatable).")
@click.option("--seeds", callback=_seeds, metavar="S[,S...]", help=_SEEDS_HELP)
@click.option("--metric", type=click.Choice(["psnr", "ssim"]), default="psnr", show_default=True, help="Metric that ranks the settings.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for sweep.md, sweep.json and one run folder per point: new, empty, or an interrupted sweep to resume [default: runs/<time>-sweep].")
@_retry_option
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
        base, axes, out or None, seeds=seeds, metric=metric, progress=progress, on_note=_note,
        on_point=None if as_json else lambda r: click.echo(_point_line(r), err=True),
        on_failed=_failed, retry_failed=retry_failed,
    )
    from inrkit.training.distributed import is_main_process

    if not is_main_process():
        return
    if as_json:
        click.echo((folder / sweeping.SWEEP_JSON).read_text())
    else:
        click.echo(sweeping.markdown(rows, metric) + "\n" + sweeping.best_line(rows))


@main.command()
@common_run_options(sharing=False)
@click.option("--sharing", "sharing_names", callback=_sharing_list, metavar="NAME[,NAME...]", help="Sharing strategies to compare, e.g. separate,minr; the first is the reference.")
@click.option("--variant", "variant_texts", multiple=True, metavar="NAME:KEY=VALUE[,...]", help="An extra method: a name and --set assignments (repeatable).")
@click.option("--params", "budget_text", required=True, metavar="N[,N...]", help="Parameter budgets for all items together, e.g. 5k,10k,20k,40k.")
@click.option("--seeds", callback=_seeds, metavar="S[,S...]", help=_SEEDS_HELP)
@click.option("--out", type=click.Path(file_okay=False), help="Folder for front.md, front.json, front.png and the run folders: new, empty, or an interrupted front to resume [default: runs/<time>-front].")
@_retry_option
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
        on_note=_note, on_match=matched, on_point=None if as_json else lambda r: click.echo(_point_line(r), err=True),
        on_failed=_failed, retry_failed=retry_failed, plots=plots,
    )
    from inrkit.training.distributed import is_main_process

    if not is_main_process():
        return
    if as_json:
        click.echo((folder / fronts.FRONT_JSON).read_text())
    else:
        click.echo(fronts.markdown(rows, methods[0].name) + f"\nwritten to {folder}")


def _parse_size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, e.g. 512x384 (got {value!r})") from None
    if w <= 0 or h <= 0:
        raise click.BadParameter(f"width and height must be positive (got {value!r})")
    return h, w


@main.command()
@click.argument("run_dir", metavar="RUN", type=click.Path())
@click.option("--item", help="Item name or index.")
@click.option("--all", "all_items", is_flag=True, help="Render every item (then -o is a folder).")
@click.option("--scale", type=float, help="Multiple of the item's size, e.g. 2 or 4.")
@click.option("--size", callback=_parse_size, metavar="WxH", help="Explicit output size in pixels.")
@click.option("-o", "--output", required=True, type=click.Path(), help="Output image (.png, .jpg, .tif, ...), or a folder with --all.")
@click.option("--force", is_flag=True, help="Replace output files that already exist.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--max-pixels", type=click.IntRange(min=1), metavar="N", help="Largest render in pixels [default: INRKIT_MAX_PIXELS or 100,000,000].")
def decode(
    run_dir: str, item: str | None, all_items: bool, scale: float | None, size: tuple[int, int] | None,
    output: str, force: bool, device: str, max_pixels: int | None,
) -> None:
    """Render items of a run (a run folder or an .inrz file) at any resolution, reading only the
    tensors they need.

    With --all, files are named after the items, made safe: item names come from the run
    folder, which is data, and never choose where a file goes outside -o.
    """
    from pathlib import Path

    from inrkit import api
    from inrkit.errors import ConfigError
    from inrkit.images import WRITABLE_SUFFIXES, write_image
    from inrkit.names import output_paths, printable, safe_name

    if all_items == (item is not None):
        raise ConfigError("give exactly one of --item NAME|INDEX and --all")
    run = api.load(run_dir)
    indices = list(range(len(run.items))) if all_items else [run.item_index(item)]  # type: ignore[arg-type]
    names = [run.item_names[i] for i in indices]
    flat = [i for i in indices if len(run.items[i]["shape"]) != 2]
    if flat:
        raise ConfigError(
            f"decode writes images, and item {run.item_names[flat[0]]!r} of {run_dir} is not 2-D "
            f"(shape {tuple(run.items[flat[0]]['shape'])}); render it in Python with "
            "inrkit.load(RUN).decode(ITEM), or write it with the run's signal plugin"
        )
    target = Path(output)
    if all_items:
        if target.exists() and not target.is_dir():
            raise ConfigError(f"-o {target} exists and is not a folder (--all writes one file per item)")
        paths = output_paths(target, names, ".png")
    else:
        if target.is_dir():
            raise ConfigError(f"-o {target} is a folder; give a file name such as {target / (safe_name(names[0]) + '.png')}")
        if target.suffix.lower() not in WRITABLE_SUFFIXES:
            raise ConfigError(f"-o {target}: use an image file name ending in {', '.join(sorted(WRITABLE_SUFFIXES))}")
        paths = [target]
    for index in indices:  # every size is checked before the first file is written
        run.output_shape(index, size=size, scale=scale, max_pixels=max_pixels)
    existing = [str(p) for p in paths if os.path.lexists(p)]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing[:3])} already exist(s); nothing was written (use --force to replace)")
    for index, path in zip(indices, paths, strict=True):
        image = run.decode(index, size=size, scale=scale, device=device, max_pixels=max_pixels)
        try:
            write_image(path, image)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot write {path}: {exc}") from None
        click.echo(f"{printable(run.item_names[index])}: {image.shape[1]}x{image.shape[0]} -> {path}")


@main.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(), help="The compressed run to write (.inrz).")
@click.option("--bits", type=click.IntRange(min=2, max=16), default=8, show_default=True, help="Bits per quantised value.")
@click.option("--fine-bits", type=click.IntRange(min=2, max=16), help="Bits of the first layer and every bias [default: --bits + 4, at most 16].")
@click.option("--per-channel", is_flag=True, help="One quantisation step per output channel of each weight (default: per tensor).")
@click.option("--qat-steps", type=click.IntRange(min=0), default=0, show_default=True, help="Steps of quantisation-aware fine-tuning on the run's data first (additive noise, then straight-through; never kept if worse).")
@click.option("--qat-lr", type=click.FloatRange(min=0, min_open=True), help="Its peak learning rate, decayed on a cosine [default: the run's].")
@click.option("--device", default="cpu", show_default=True, help="Where the fine-tuning runs: cpu, auto, cuda or cuda:N.")
@click.option("--measure/--no-measure", default=True, show_default=True, help="Score the run and the file on the run's data (PSNR before and after).")
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the rate and quality as JSON.")
def compress(
    run_dir: str, output: str, bits: int, fine_bits: int | None, per_channel: bool, qat_steps: int, qat_lr: float | None,
    device: str, measure: bool, force: bool, as_json: bool,
) -> None:
    """Quantise and entropy-code a finished run into one .inrz file; print its bits per pixel."""
    from inrkit.runs.compress import compress as compress_run
    from inrkit.runs.compress import summary

    result = compress_run(run_dir, output, bits=bits, fine_bits=fine_bits, per_channel=per_channel, qat_steps=qat_steps,
                          qat_lr=qat_lr, device=device, measure=measure, force=force, on_note=None if as_json else _note)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    for line in summary(result):
        click.echo(line)


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int]:
    if not value:
        return []
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected whole numbers separated by commas (got {value!r})") from None


def _name_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@main.command()
@common_run_options(sharing=False, width=False)
@click.option("--sharing", "sharing_names", callback=_sharing_list, metavar="NAME[,NAME...]", help="INR methods, e.g. minr,separate.")
@click.option("--width", "widths", callback=_int_list, metavar="W[,W...]", help="Widths to fit each method at, e.g. 24,32,48,64 [default: the config's].")
@click.option("--bits", "bits", callback=_int_list, default="8", show_default=True, metavar="B[,B...]", help="Bit depths to compress each fit at.")
@click.option("--qat-steps", type=click.IntRange(min=0), default=0, show_default=True, help="Also compress each fit after this many steps of quantisation-aware fine-tuning (method '<name>+qat').")
@click.option("--seeds", callback=_seeds, metavar="S[,S...]", help="Fit every INR setting once per seed; points are means over seeds, deltas come with intervals [default: once, at the config's seed].")
@click.option("--codecs", "codec_names", callback=_name_list, default="jpeg,webp,avif", show_default=True, metavar="NAME[,NAME...]", help="Codecs measured on the same images (jpeg, webp, avif); empty for none.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for rd.json, rd.md, rd.png, the runs and every point; an earlier rd's folder resumes it.")
@click.option("--json", "as_json", is_flag=True, help="Print rd.json instead of the table.")
def rd(
    config_file: str | None, assignments: tuple[str, ...], progress: bool | None, sharing_names: list[str], widths: list[int],
    bits: list[int], qat_steps: int, seeds: list[int] | None, codec_names: list[str], out: str, as_json: bool, **flags: Any,
) -> None:
    """Rate-distortion curves: INR methods (widths x bits) against JPEG, WebP and AVIF on the same images."""
    from inrkit.experiments import rd as rate_distortion

    base = build_config_dict(config_file, flags, assignments)
    if not widths:
        widths = [int(base.get("model", {}).get("width", 256))]
    if progress is None:
        progress = sys.stderr.isatty()

    def report(point: dict[str, Any]) -> None:
        if not as_json:
            psnr = "–" if point.get("psnr") is None else f"{point['psnr']:.2f} dB"
            seed = "" if point.get("seed") is None else f" seed {point['seed']}"
            click.echo(f"{point['method']} {point['setting']}{seed}: {point['bpp']:.4f} bpp, {psnr}", err=True)

    summary = rate_distortion.rd(base, sharing=sharing_names, widths=widths, bits=bits, codecs=codec_names, out=out,
                                 qat_steps=qat_steps, seeds=seeds, progress=progress, on_note=_note, on_point=report)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(rate_distortion.markdown(summary), nl=False)


@main.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--data", multiple=True, metavar="PATH", help="New items: file, folder or glob (repeatable; paths after the options count too).")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder for the new items (new or empty).")
@click.option("--steps", type=int, help="Training steps [default: the run's].")
@click.option("--lr", type=float, help="Learning rate [default: the run's].")
@click.option("--seed", type=int, help="Random seed [default: the run's].")
@click.option("--device", help="auto, cpu, cuda or cuda:N [default: the run's].")
@click.option("--init", type=click.Choice(["random", "mean"]), default="random", show_default=True, help="Start the new items' layers from the mean of the run's items' layers, or at random.")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json instead of the table.")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar [default: when stderr is a terminal].")
@log_option
def encode(
    run_dir: str, paths: tuple[str, ...], data: tuple[str, ...], out: str | None, init: str, as_json: bool,
    progress: bool | None, log: tuple[str, ...], **train: Any,
) -> None:
    """Encode new items against a trained run's frozen shared layers (only their own layers train)."""
    from inrkit import api

    data = data + paths
    if progress is None:
        progress = sys.stderr.isatty()
    overrides = {k: v for k, v in train.items() if v is not None}
    if log:
        overrides["callbacks"] = list(log)
    result = api.encode(run_dir, list(data), out=out, train=overrides, progress=progress, init=init, on_note=_note)
    report_fit(result, as_json)


@main.command()
@click.option("--items", type=click.IntRange(min=1, max=1_000_000), default=4, show_default=True, help="Number of images.")
@click.option("--size", type=click.IntRange(min=2, max=MAX_BENCH_SIDE), default=128, show_default=True, help="Image side S (S x S).")
@click.option("--width", type=click.IntRange(min=1, max=MAX_WIDTH), default=256, show_default=True)
@click.option("--layers", type=click.IntRange(min=2, max=MAX_LAYERS), default=5, show_default=True)
@click.option("--sharing", type=PluginName("sharing"), default="minr", show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="Timed steps (median).")
@click.option("--device", default="auto", show_default=True)
@click.option("--no-naive", is_flag=True, help="Skip the naive per-image loop and the torch.func ensemble (slow or large for many items).")
@click.option("--compile/--no-compile", "compile_", default=False, show_default=True, help="torch.compile inrkit's network first.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True, help="bf16 autocasts the hidden layers' products.")
@click.option("--tf32/--no-tf32", default=True, show_default=True, help="On CUDA, TF32 matrix products.")
@click.option("--chunk-points", type=click.IntRange(min=1), help="Points per item per chunk [default: auto].")
@click.option("--profile", is_flag=True, help="Also list each step's most expensive operators (torch.profiler).")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
def bench(
    items: int, size: int, width: int, layers: int, sharing: str, repeats: int, device: str, no_naive: bool,
    compile_: bool, precision: str, tf32: bool, chunk_points: int | None, profile: bool, as_json: bool,
) -> None:
    """Time a training step against a naive per-image loop, a torch.func ensemble and the roofline."""
    from inrkit.tools.bench import run_bench

    r = run_bench(
        items=items, size=size, width=width, layers=layers, sharing=sharing, repeats=repeats, device=device,
        naive=not no_naive, compile=compile_, precision=precision, tf32=tf32, chunk_points=chunk_points, profile=profile,
    )
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"{items} x {size}x{size}, {sharing}, width {width}, {layers} layers on {r['device']} ({r['device_name']}, {r['threads']} threads)")
    switches = f"{precision}" + (", compiled" if compile_ else "") + (", tf32" if r["tf32"] else "")
    click.echo(f"inrkit step      {r['step_seconds'] * 1e3:9.1f} ms  (chunks of {r['chunk_points']} points per item; {switches})")
    if r["naive_step_seconds"] is not None:
        click.echo(f"naive step       {r['naive_step_seconds'] * 1e3:9.1f} ms  -> inrkit is {r['ratio_vs_naive']:.2f}x faster")
        click.echo(f"torch.func step  {r['ensemble_step_seconds'] * 1e3:9.1f} ms  -> inrkit is {r['ratio_vs_ensemble']:.2f}x faster")
    click.echo(
        f"roofline floor   {r['floor_step_seconds'] * 1e3:9.1f} ms  -> inrkit takes {r['ratio_vs_floor']:.2f}x the floor "
        f"(GEMM {r['gemm_flops_per_second'] / 1e9:.0f} GFLOP/s, sin {r['sine_per_second'] / 1e9:.2f} G/s)"
    )
    click.echo(f"peak memory      {r['peak_memory_bytes'] / 2**20:9.1f} MiB")
    for name, rows in (r["profile"] or {}).items():
        click.echo(f"\n{name} step: operators by self time ({'card' if r['device'].startswith('cuda') else 'host'})")
        for row in rows:
            click.echo(f"  {row['self_ms_per_step']:8.2f} ms  {row['calls_per_step']:6.0f} calls  {row['name'][:90]}")


@main.group()
def analyze() -> None:
    """Analyses of trained runs."""


@analyze.command("weights")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Figure (.png); the numbers go to the same name with .json.")
@click.option("--force", is_flag=True, help="Replace existing output files.")
def analyze_weights(runs: tuple[str, ...], output: str, force: bool) -> None:
    """Per-layer weight histograms across items (the paper's Figure 2) and their similarity."""
    from pathlib import Path

    from inrkit.errors import ConfigError
    from inrkit.tools import analysis

    figure = Path(output)
    if figure.suffix.lower() != ".png":
        raise ConfigError(f"-o {figure}: the figure is written as PNG; use a name ending in .png")
    numbers = figure.with_suffix(".json")
    existing = [str(p) for p in (figure, numbers) if os.path.lexists(p)]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing)} already exist(s); nothing was written (use --force to replace)")
    report = analysis.write_analysis(runs, figure, numbers)  # both files, or neither
    click.echo("layer       curves  excess kurtosis  W1/std between items (mean, max)")
    for layer in report["layers"]:
        mean, top = layer["normalized_w1_mean"], layer["normalized_w1_max"]
        click.echo(
            f"{layer['layer']:<11} {layer['curves']:>6}  {_fmt(layer['excess_kurtosis_mean'], 2):>15}  "
            f"{_fmt(mean, 3):>7}  {_fmt(top, 3):>7}"
        )
    verdict = report["middle_layers_more_alike"]
    if verdict is not None:
        click.echo(f"hidden layers more alike across items than first and last: {'yes' if verdict else 'no'}")
    click.echo(f"figure: {figure}\nnumbers: {numbers}")


@analyze.command("activations")
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--points", type=click.IntRange(min=1), default=2048, show_default=True, help="Coordinates per item measured.")
@click.option("--no-gradients", is_flag=True, help="Skip the gradient norms (they need the run's data on disk).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also write the numbers as JSON here.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON instead of the tables.")
def analyze_activations(run_dir: str, points: int, no_gradients: bool, output: str | None, as_json: bool) -> None:
    """Per-layer pre-activations, living units and gradient norms, at initialisation and trained."""
    from pathlib import Path

    from inrkit import api, files
    from inrkit.tools.diagnostics import activation_report, format_table

    report = activation_report(api.load(run_dir), points=points, gradients=not no_gradients)
    if output:
        files.write_json(Path(output), report)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for label in ("init", "trained"):
        click.echo(f"{label}:\n{format_table(report[label])}\n")
    click.echo("alive: share of (point, unit) pairs whose activation exceeds 1e-3; dead units: silent at every point")
    if report["note"]:
        click.echo(f"Note: {report['note']}", err=True)


@main.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print what was checked as JSON.")
def verify(run_dir: str, as_json: bool) -> None:
    """Check a run folder: SHA-256 sums, checkpoint metadata, config and tensor shapes.

    Exits 0 when the folder is intact, 1 with one Error line naming the problem otherwise.
    """
    from inrkit import api

    report = api.verify(run_dir)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    if not report["checksums"]:
        click.echo(f"Note: {run_dir} records no SHA-256 sums (written by an older inrkit); its structure was checked", err=True)
    sums = f"SHA-256 of {', '.join(report['checksums'])} match" if report["checksums"] else "no SHA-256 recorded"
    state = "finished" if report["finished"] else "unfinished"
    click.echo(f"ok: {run_dir}: {sums}; {report['items']} item(s), {report['tensors']} tensors fit the config ({state} run)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "show_all", is_flag=True, help="Also list every plugin module with the hooks it implements.")
def plugins(as_json: bool, show_all: bool) -> None:
    """List installed plugins: name, kind, providing distribution and version."""
    from inrkit.plugins import get_registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # failures are listed below instead
        registry = get_registry()
    entries = [
        {"name": e.name, "kind": e.kind, "distribution": e.distribution, "version": e.version, "plugin": e.plugin}
        for e in registry.entries()
    ]
    failures = [f.__dict__ for f in registry.failures]
    if as_json:
        payload: dict[str, Any] = {"plugins": entries, "failures": failures, "conflicts": registry.conflicts()}
        if show_all:
            payload["modules"] = registry.plugins()
        click.echo(json.dumps(payload, indent=2))
        return
    header = {"kind": "kind", "name": "name", "distribution": "distribution", "version": "version", "plugin": "entry point"}
    cols = ["kind", "name", "distribution", "version", "plugin"]
    widths = {c: max(len(str(r[c])) for r in [header, *entries]) for c in cols}
    for row in [header, *entries]:
        click.echo("  ".join(str(row[c]).ljust(widths[c]) for c in cols).rstrip())
    if show_all:
        click.echo("\nplugin modules (entry point, distribution, hooks):")
        for module in registry.plugins():
            click.echo(f"  {module['plugin']}  {module['distribution']} {module['version']}  {', '.join(module['hooks'])}")
    for f in registry.failures:
        click.echo(f"failed: {f.describe()}", err=True)
    for message in registry.conflicts():
        click.echo(f"conflict: {message}", err=True)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (attach it to a bug report).")
@click.option("--runs", "runs_dir", default="runs", show_default=True, type=click.Path(), help="Folder run folders go to: checked for writing and free disk.")
@click.option("--compile-probe/--no-compile-probe", default=True, show_default=True, help="Check that torch.compile works here (seconds; in a separate process).")
@click.option("--compile-timeout", type=click.FloatRange(min=1), default=120, show_default=True, metavar="SECONDS", help="Give up on the torch.compile probe after this long.")
def doctor(as_json: bool, runs_dir: str, compile_probe: bool, compile_timeout: float) -> None:
    """Report this environment for bug reports: versions, devices, plugins, runs folder, torch.compile.

    Never fails on a broken environment: each check reports its own error.
    """
    from inrkit.tools.doctor import format_report, gather

    report = gather(runs=runs_dir, compile_probe=compile_probe, compile_timeout=compile_timeout)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        click.echo(format_report(report))


@main.command()
@click.option("--activation", type=PluginName("activation"), default="siren", show_default=True)
@click.option("--sharing", type=PluginName("sharing"), default="minr", show_default=True)
@click.option("--n", "n_items", type=click.IntRange(min=1), default=4, show_default=True, help="Number of items.")
@click.option("--width", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--layers", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--channels", type=click.IntRange(min=1), default=3, show_default=True, help="Output channels.")
@click.option("--data", "data", multiple=True, metavar="PATH", help="Count (and estimate) for these items instead of --n (repeatable).")
@click.option("--size", metavar="HxW", help="Every item's spatial size for --memory without --data (e.g. 32x32) [default: 64 per axis].")
@click.option("--memory", is_flag=True, help="Also estimate the fit's peak memory (the model built on the meta device).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Plugin option, e.g. sharing.projection=false.")
@click.option("--json", "as_json", is_flag=True, help="Print {total, shared, per_item} (and memory_bytes, memory_parts) as JSON.")
def params(
    activation: str, sharing: str, n_items: int, width: int, layers: int, channels: int, data: tuple[str, ...],
    size: str | None, memory: bool, assignments: tuple[str, ...], as_json: bool,
) -> None:
    """Exact parameter counts for N items (and, with --memory, the fit's memory), without training."""
    from inrkit import api
    from inrkit.config import apply_overrides
    from inrkit.errors import ConfigError
    from inrkit.limits import format_bytes

    base = {
        "activation": {"name": activation},
        "sharing": {"name": sharing},
        "model": {"width": width, "layers": layers},
    }
    config = api.as_config(apply_overrides(base, assignments))
    shapes: list[tuple[int, ...]] | None = None
    if size is not None:
        try:
            shapes = [tuple(int(n) for n in size.lower().split("x"))] * n_items
        except ValueError:
            raise ConfigError(f"--size {size!r}: give the spatial size as HxW, e.g. 32x32") from None
        if any(n < 1 for n in shapes[0]):
            raise ConfigError(f"--size {size!r}: every side must be positive")
    estimate = None
    if data:  # loads the items: their count, shapes and channels
        estimate = api.memory_estimate(config, data=list(data))
        shapes, channels = estimate.item_shapes, estimate.channels
        n_items = len(shapes)
    elif memory:
        estimate = api.memory_estimate(config, item_shapes=shapes or [(64, 64)] * n_items, channels=channels)
    counts = api.parameter_counts(config, n_items=n_items, channels=channels, item_shapes=shapes)
    report: dict[str, object] = dict(counts.as_dict())
    if memory and estimate is not None:
        report["memory_bytes"] = estimate.total
        report["memory_parts"] = estimate.parts
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(
        f"{config.activation.name} + {config.sharing.name}, {n_items} items, width {config.model.width}, "
        f"{config.model.layers} layers: "
        f"total {counts.total:,} · shared {counts.shared:,} · per item {counts.per_item:,}"
    )
    if memory and estimate is not None:
        shown = ", ".join(f"{k} {format_bytes(v)}" for k, v in estimate.parts.items() if v)
        click.echo(f"memory at the fit's peak: about {format_bytes(estimate.total)} ({shown})")


if __name__ == "__main__":  # pragma: no cover
    main()
