"""Fit several methods on the same items with the same budget and tabulate them (the paper's tables).

Each method is a *variant*: a name plus ``--set``-style assignments applied on top of the common
run configuration, e.g. ``w/o projection:sharing.projection=false``. ``--sharing a,b`` is
shorthand for variants ``a:sharing.name=a`` and ``b:sharing.name=b``. Every variant keeps its own
run folder under the output folder; ``table.md`` (the layout of the paper's Table I) and
``table.json`` are rewritten after each variant, so an interrupted comparison keeps what it has.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from inrkit import api, artifacts, distributed
from inrkit.config import DEFAULT_SHARING, ResolvedRun, apply_overrides
from inrkit.devices import resolve_device
from inrkit.errors import ConfigError
from inrkit.results import RunMetrics

TABLE_MD = "table.md"
TABLE_JSON = "table.json"
_SPLIT = re.compile(r",(?=\s*[A-Za-z_][\w.]*\s*=)")  # commas that start a new KEY=VALUE


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of a comparison: a label and the assignments that make it."""

    name: str
    assignments: tuple[str, ...]

    @property
    def folder_name(self) -> str:
        """The variant's run folder under the comparison's: letters, digits, ``.``, ``_`` and
        ``-`` only, never hidden and never ``.`` or ``..``."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", self.name).strip("-").lstrip(".").strip("-")
        return slug or "variant"


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
    """The base config with the variant's assignments.

    Options in the base's ``sharing`` section belong to the base's strategy (``minr`` when it
    names none): a variant that switches to another strategy starts from that strategy's
    defaults, so ``--sharing minr,row --set sharing.projection=false`` ablates MINR only.
    """
    data = copy.deepcopy(dict(base))
    section = data.get("sharing")
    base_name = section.get("name", DEFAULT_SHARING) if isinstance(section, dict) else DEFAULT_SHARING
    for assignment in variant.assignments:
        key, _, value = assignment.partition("=")
        if key.strip() == "sharing.name" and value.strip() != base_name:
            data["sharing"] = {}
    return apply_overrides(data, variant.assignments)


def _row(variant: Variant, metrics: RunMetrics, run_dir: Path | None) -> dict[str, Any]:
    return {
        "method": variant.name,
        "sharing": metrics.sharing,
        "activation": metrics.activation,
        "assignments": list(variant.assignments),
        "params": metrics.params.total,
        "params_shared": metrics.params.shared,
        "params_per_item": metrics.params.per_item,
        "psnr_mean": metrics.psnr_mean,
        "psnr_std": metrics.psnr_std,
        "ssim_mean": metrics.ssim_mean,
        "ssim_std": metrics.ssim_std,
        "seconds": metrics.seconds,
        "steps": metrics.steps,
        "items": len(metrics.items),
        "run_dir": str(run_dir.name) if run_dir else None,
    }


def _pm(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f} ± {(std or 0.0):.{digits}f}"


def _millions(params: int) -> str:
    return f"{params / 1e6:.2f}" if params >= 10_000 else f"{params / 1e6:.4f}"


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "| Method | Params (M) | PSNR (dB) | SSIM | Seconds |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {_millions(r['params'])} | {_pm(r['psnr_mean'], r['psnr_std'], 2)} | "
            f"{_pm(r['ssim_mean'], r['ssim_std'], 2)} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def compare(
    base: Mapping[str, Any],
    variants: Sequence[Variant],
    out: str | Path | None,
    *,
    progress: bool = False,
    on_note: Callable[[str], None] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Fit every variant of ``base`` into ``out/<variant>/`` and write the tables; returns the rows."""
    if not variants:
        raise ConfigError("nothing to compare: give --sharing NAME[,NAME...] and/or --variant NAME:KEY=VALUE")
    names = [v.folder_name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"variant names must differ (as folder names): {', '.join(duplicates)}")
    configs = [api.as_config(variant_config(base, v)) for v in variants]
    for config in configs:  # every plugin name and option is checked before anything is fitted
        ResolvedRun(config)
    # Under torchrun rank 0 creates the folder and writes the tables; every rank trains.
    group, _ = distributed.join(resolve_device(configs[0].train.device))
    folder = group.on_main(lambda: artifacts.new_run_folder(out, "compare"))
    rows: list[dict[str, Any]] = []
    for variant, config in zip(variants, configs, strict=True):
        result = api.fit(config, out=folder / variant.folder_name, progress=progress, on_note=on_note)
        if result.metrics is None:  # another rank of a distributed run: rank 0 reports
            continue
        rows.append(_row(variant, result.metrics, result.run_dir))
        artifacts.write_json(folder / TABLE_JSON, rows)
        artifacts.write_text(folder / TABLE_MD, markdown_table(rows))
        if on_row is not None:
            on_row(rows[-1])
    return rows
