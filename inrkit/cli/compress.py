"""Rate: ``inrkit compress`` (one run into an ``.inrz`` file) and ``rd`` (rate-distortion curves)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from inrkit.cli.options import (
    build_config_dict,
    common_run_options,
    int_list,
    name_list,
    note,
    parse_seeds,
    sharing_list,
)
from inrkit.limits import MAX_STEPS


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(), help="The compressed run to write (.inrz).")
@click.option("--bits", type=click.IntRange(min=2, max=16), default=8, show_default=True, help="Bits per quantised value.")
@click.option("--fine-bits", type=click.IntRange(min=2, max=16), help="Bits of the first layer and every bias [default: --bits + 4, at most 16].")
@click.option("--per-channel", is_flag=True, help="One quantisation step per output channel of each weight (default: per tensor).")
@click.option("--qat-steps", type=click.IntRange(min=0, max=MAX_STEPS), default=0, show_default=True, help="Steps of quantisation-aware fine-tuning on the run's data first (additive noise, then straight-through; never kept if worse).")
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
                          qat_lr=qat_lr, device=device, measure=measure, force=force, on_note=None if as_json else note)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    for line in summary(result):
        click.echo(line)


@click.command()
@common_run_options(sharing=False, width=False)
@click.option("--sharing", "sharing_names", callback=sharing_list, metavar="NAME[,NAME...]", help="INR methods, e.g. minr,separate.")
@click.option("--width", "widths", callback=int_list, metavar="W[,W...]", help="Widths to fit each method at, e.g. 24,32,48,64 [default: the config's].")
@click.option("--bits", "bits", callback=int_list, default="8", show_default=True, metavar="B[,B...]", help="Bit depths to compress each fit at.")
@click.option("--qat-steps", type=click.IntRange(min=0, max=MAX_STEPS), default=0, show_default=True, help="Also compress each fit after this many steps of quantisation-aware fine-tuning (method '<name>+qat').")
@click.option("--seeds", callback=parse_seeds, metavar="S[,S...]", help="Fit every INR setting once per seed; points are means over seeds, deltas come with intervals [default: once, at the config's seed].")
@click.option("--codecs", "codec_names", callback=name_list, default="jpeg,webp,avif", show_default=True, metavar="NAME[,NAME...]", help="Codecs measured on the same images (jpeg, webp, avif); empty for none.")
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
                                 qat_steps=qat_steps, seeds=seeds, progress=progress, on_note=note, on_point=report)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(rate_distortion.markdown(summary), nl=False)


COMMANDS = [compress, rd]
