"""One run: ``inrkit run``, ``encode``, ``decode``, ``verify`` and ``params``."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from inrkit.cli.options import (
    ConfigDefault,
    PluginName,
    build_config_dict,
    common_run_options,
    config_option,
    log_option,
    note,
    parse_size,
)
from inrkit.cli.output import report_fit

#: ``--no-recon``: no ``<run>/recon/`` (at 10^5 small items writing it takes longer than the checkpoint).
RECON = click.option(
    "--recon/--no-recon", default=True, show_default=True,
    help="Write every item's reconstruction into <run>/recon (without: inrkit decode RUN --all renders them later).",
)


@click.command()
@common_run_options()
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (new or empty) [default: runs/<time>-<activation>-<sharing>].")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json instead of the table.")
@click.option("--plots/--no-plots", default=None, help="Draw training curves and reconstruction figures into <run>/plots [default: on unless INRKIT_PLOTS=0].")
@RECON
@click.option("--resume", type=click.Path(file_okay=False), help="Continue an interrupted run folder from its last snapshot.")
def run(
    config_file: str | None, assignments: tuple[str, ...], as_json: bool, progress: bool | None, plots: bool | None,
    recon: bool, out: str | None, resume: str | None, **flags: Any,
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
        result = api.fit(resume=resume, progress=progress, on_note=note, plots=plots, recon=recon)
    else:
        config = api.as_config(build_config_dict(config_file, flags, assignments))
        result = api.fit(config, out=out, progress=progress, on_note=note, plots=plots, recon=recon)
    report_fit(result, as_json)


@click.command()
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
@RECON
@log_option
def encode(
    run_dir: str, paths: tuple[str, ...], data: tuple[str, ...], out: str | None, init: str, as_json: bool,
    progress: bool | None, recon: bool, log: tuple[str, ...], **train: Any,
) -> None:
    """Encode new items against a trained run's frozen shared layers (only their own layers train)."""
    from inrkit import api

    data = data + paths
    if progress is None:
        progress = sys.stderr.isatty()
    overrides = {k: v for k, v in train.items() if v is not None}
    if log:
        overrides["callbacks"] = list(log)
    result = api.encode(run_dir, list(data), out=out, train=overrides, progress=progress, init=init, on_note=note,
                        recon=recon)
    report_fit(result, as_json)


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path())
@click.option("--item", help="Item name or index.")
@click.option("--all", "all_items", is_flag=True, help="Render every item (then -o is a folder).")
@click.option("--scale", type=float, help="Multiple of the item's size, e.g. 2 or 4.")
@click.option("--size", callback=parse_size, metavar="WxH", help="Explicit output size in pixels.")
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


@click.command()
@click.argument("run_dir", metavar="RUN|FILE.inrz", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print what was checked as JSON.")
def verify(run_dir: str, as_json: bool) -> None:
    """Check a run folder (SHA-256 sums, checkpoint metadata, config, tensor shapes, the .inrz
    files it holds) or an .inrz file (header, layout, every section's CRC-32), without decoding.

    Exits 0 when it is intact, 1 with one Error line naming the problem otherwise.
    """
    from inrkit import api

    report = api.verify(run_dir)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    if "file" in report:
        click.echo(f"ok: {run_dir}: header and {report['sections']} section CRC-32s match; {report['items']} item(s) fit the config")
        return
    if not report["checksums"]:
        click.echo(f"Note: {run_dir} records no SHA-256 sums (written by an older inrkit); its structure was checked", err=True)
    sums = f"SHA-256 of {', '.join(report['checksums'])} match" if report["checksums"] else "no SHA-256 recorded"
    state = "finished" if report["finished"] else "unfinished"
    held = f"; {len(report['inrz'])} .inrz file(s) intact" if report["inrz"] else ""
    click.echo(f"ok: {run_dir}: {sums}; {report['items']} item(s), {report['tensors']} tensors fit the config ({state} run){held}")


@click.command()
@config_option("--activation", type=PluginName("activation"), default=ConfigDefault("activation"), config_key="activation", help="Activation plugin")
@config_option("--sharing", type=PluginName("sharing"), default=ConfigDefault("sharing"), config_key="sharing", help="Sharing strategy plugin")
@click.option("--n", "n_items", type=click.IntRange(min=1), default=4, show_default=True, help="Number of items.")
@config_option("--width", type=click.IntRange(min=1), default=ConfigDefault("model.width"), config_key="model.width", help="Hidden width")
@config_option("--layers", type=click.IntRange(min=2), default=ConfigDefault("model.layers"), config_key="model.layers", help="Linear layers")
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


COMMANDS = [run, encode, decode, verify, params]
