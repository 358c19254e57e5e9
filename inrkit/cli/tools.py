"""Inspection: ``inrkit bench``, ``analyze weights|activations`` and ``doctor``."""

from __future__ import annotations

import json
import os

import click

from inrkit.cli.options import PRECISIONS, ConfigDefault, PluginName, config_option
from inrkit.cli.output import fmt
from inrkit.limits import MAX_BENCH_SIDE, MAX_LAYERS, MAX_WIDTH


@click.command()
@click.option("--items", type=click.IntRange(min=1, max=1_000_000), default=4, show_default=True, help="Number of images.")
@click.option("--size", type=click.IntRange(min=2, max=MAX_BENCH_SIDE), default=128, show_default=True, help="Image side S (S x S).")
@config_option("--width", type=click.IntRange(min=1, max=MAX_WIDTH), default=ConfigDefault("model.width"), config_key="model.width", help="Hidden width")
@config_option("--layers", type=click.IntRange(min=2, max=MAX_LAYERS), default=ConfigDefault("model.layers"), config_key="model.layers", help="Linear layers")
@config_option("--sharing", type=PluginName("sharing"), default=ConfigDefault("sharing"), config_key="sharing", help="Sharing strategy plugin")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="Timed steps (median).")
@config_option("--device", default=ConfigDefault("train.device"), config_key="train.device", help="auto, cpu, cuda or cuda:N")
@click.option("--no-naive", is_flag=True, help="Skip the naive per-image loop and the torch.func ensemble (slow or large for many items).")
@click.option("--compile/--no-compile", "compile_", default=False, show_default=True, help="torch.compile inrkit's network first.")
@config_option("--precision", type=click.Choice(PRECISIONS), default=ConfigDefault("train.precision"), config_key="train.precision", help="bf16 autocasts the hidden layers' products")
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
        if r["ensemble_compiled_step_seconds"] is not None:
            click.echo(f"  compiled       {r['ensemble_compiled_step_seconds'] * 1e3:9.1f} ms  -> inrkit is "
                       f"{r['ratio_vs_ensemble_compiled']:.2f}x faster")
        else:
            click.echo(f"  compiled       (could not compile here: {r['ensemble_compiled_error']})")
    click.echo(
        f"kernel floor     {r['floor_step_seconds'] * 1e3:9.1f} ms  -> inrkit takes {r['ratio_vs_floor']:.2f}x "
        f"(today's kernels: GEMM {r['gemm_flops_per_second'] / 1e9:.0f} GFLOP/s, sin {r['sine_per_second'] / 1e9:.2f} G/s)"
    )
    click.echo(
        f"physical floor   {r['physical_floor_step_seconds'] * 1e3:9.1f} ms  -> inrkit takes {r['ratio_vs_physical_floor']:.2f}x "
        f"(FLOPs at {r['peak_gemm_flops_per_second'] / 1e9:.0f} GFLOP/s: {r['flop_floor_step_seconds'] * 1e3:.1f} ms; "
        f"{r['bytes_per_point'] / 1024:.1f} KiB a point at {r['copy_bytes_per_second'] / 1e9:.1f} GB/s: "
        f"{r['traffic_floor_step_seconds'] * 1e3:.1f} ms)"
    )
    click.echo(f"peak memory      {r['peak_memory_bytes'] / 2**20:9.1f} MiB")
    for name, rows in (r["profile"] or {}).items():
        click.echo(f"\n{name} step: operators by self time ({'card' if r['device'].startswith('cuda') else 'host'})")
        for row in rows:
            click.echo(f"  {row['self_ms_per_step']:8.2f} ms  {row['calls_per_step']:6.0f} calls  {row['name'][:90]}")


@click.group()
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
            f"{layer['layer']:<11} {layer['curves']:>6}  {fmt(layer['excess_kurtosis_mean'], 2):>15}  "
            f"{fmt(mean, 3):>7}  {fmt(top, 3):>7}"
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
@click.option("--force", is_flag=True, help="Replace an existing -o file.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON instead of the tables.")
def analyze_activations(run_dir: str, points: int, no_gradients: bool, output: str | None, force: bool, as_json: bool) -> None:
    """Per-layer pre-activations, living units and gradient norms, at initialisation and trained."""
    from pathlib import Path

    from inrkit import api, files
    from inrkit.errors import ConfigError
    from inrkit.tools.diagnostics import activation_report, format_table

    if output and os.path.lexists(output) and not force:
        raise ConfigError(f"-o {output} already exists; nothing was written (use --force to replace it)")
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


@click.command()
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


COMMANDS = [bench, analyze, doctor]
