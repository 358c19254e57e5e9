"""Many fits of one base config, one run folder each, resumable point by point.

``compare``, ``sweep`` and ``front`` are all a list of *points* (a variant of the base config and
a seed) fitted into ``OUT/<variant>[/seed-<n>]/``. The experiment folder keeps its recipe in
``experiment.json`` (the kind, the base config and every point's assignments). Given the same
``--out`` again, a point whose run folder holds ``metrics.json`` is read back instead of refitted,
an interrupted point with a snapshot continues from it, and a point that never got that far is
fitted again; a different base config, or a different recipe under a point's folder name, is
refused before anything is fitted or changed.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from inrkit import api, artifacts, distributed
from inrkit.config import DEFAULT_SHARING, ResolvedRun, apply_overrides
from inrkit.devices import resolve_device
from inrkit.errors import ConfigError
from inrkit.results import RunMetrics

EXPERIMENT_FILE = "experiment.json"
EXPERIMENT_FORMAT = "inrkit.experiment"
EXPERIMENT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of a comparison: a label and the ``--set`` assignments that make it."""

    name: str
    assignments: tuple[str, ...]

    @property
    def folder_name(self) -> str:
        """The variant's run folder: letters, digits, ``.``, ``_`` and ``-`` only, never hidden and
        never ``.`` or ``..``."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", self.name).strip("-").lstrip(".").strip("-")
        return slug or "variant"


@dataclasses.dataclass(frozen=True)
class Point:
    """One fit: a variant and a seed (``None``: the base config's seed, and no seed folder)."""

    variant: Variant
    seed: int | None = None

    @property
    def folder(self) -> str:
        return self.variant.folder_name if self.seed is None else f"{self.variant.folder_name}/seed-{self.seed}"

    @property
    def assignments(self) -> tuple[str, ...]:
        return self.variant.assignments + (() if self.seed is None else (f"train.seed={self.seed}",))


@dataclasses.dataclass
class PointResult:
    point: Point
    metrics: RunMetrics
    run_dir: Path
    #: True when the point was read back from an earlier, finished run of the experiment.
    reused: bool = False

    @property
    def item_scores(self) -> dict[str, float]:
        return {item.name: item.psnr for item in self.metrics.items if item.psnr is not None}


def points(variants: Sequence[Variant], seeds: Sequence[int] | None) -> list[Point]:
    """Every variant at every seed (variant-major), or once each at the base seed."""
    if seeds is not None and len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds lists a seed twice: {list(seeds)}")
    return [Point(v, s) for v in variants for s in (seeds if seeds is not None else [None])]


def config_for(base: Mapping[str, Any], assignments: Iterable[str]) -> dict[str, Any]:
    """The base config with the assignments applied.

    Options in the base's ``sharing`` section belong to the base's strategy (``minr`` when it
    names none): a variant that switches to another strategy starts from that strategy's
    defaults, so ``--sharing minr,row --set sharing.projection=false`` ablates MINR only.
    """
    assignments = list(assignments)
    data = copy.deepcopy(dict(base))
    section = data.get("sharing")
    base_name = section.get("name", DEFAULT_SHARING) if isinstance(section, dict) else DEFAULT_SHARING
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        if key.strip() == "sharing.name" and value.strip() != base_name:
            data["sharing"] = {}
    return apply_overrides(data, assignments)


def _plain(data: Any) -> Any:
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def _check_points(planned: Sequence[Point]) -> None:
    folders = [p.folder for p in planned]
    duplicates = sorted({f for f in folders if folders.count(f) > 1})
    if duplicates:
        raise ConfigError(f"variant names must differ (as folder names): {', '.join(duplicates)}")


def _open(out: str | Path | None, kind: str, base: Mapping[str, Any], planned: Sequence[Point]) -> Path:
    """Create the experiment folder, or reopen one written by the same kind and base config."""
    recipe = {p.folder: {"variant": p.variant.name, "assignments": list(p.assignments)} for p in planned}
    manifest_path = Path(out) / EXPERIMENT_FILE if out is not None else None
    if manifest_path is not None and manifest_path.is_file():
        folder = Path(out)  # type: ignore[arg-type]
        manifest = artifacts.read_json(manifest_path)
        if not isinstance(manifest, dict) or manifest.get("format") != EXPERIMENT_FORMAT:
            raise ConfigError(f"{manifest_path} is not an inrkit experiment file; choose a new --out")
        if int(manifest.get("version", 0) or 0) > EXPERIMENT_VERSION:
            raise ConfigError(f"{manifest_path} was written by a newer inrkit (version {manifest.get('version')}); upgrade inrkit")
        if manifest.get("kind") != kind:
            raise ConfigError(f"--out {folder} holds an `inrkit {manifest.get('kind')}`, not an `inrkit {kind}`; choose a new folder")
        if manifest.get("base") != _plain(base):
            raise ConfigError(
                f"--out {folder} holds an experiment with a different base config; resume it with the same "
                "options, or choose a new folder (nothing was changed)"
            )
        listed = manifest.get("points")
        known: dict[str, Any] = listed if isinstance(listed, dict) else {}
        for name, spec in recipe.items():
            if name in known and known[name] != spec:
                raise ConfigError(
                    f"--out {folder}: {name} was fitted with {known[name].get('assignments')}, now asked for "
                    f"{spec['assignments']}; rename the variant or choose a new folder (nothing was changed)"
                )
        manifest["points"] = {**known, **recipe}
    else:
        folder = artifacts.new_run_folder(out, kind)
        manifest = {
            "format": EXPERIMENT_FORMAT, "version": EXPERIMENT_VERSION, "kind": kind,
            "base": _plain(base), "points": recipe,
        }
    artifacts.write_json(folder / EXPERIMENT_FILE, manifest)
    return folder


def _finished(run_dir: Path) -> RunMetrics | None:
    path = run_dir / artifacts.METRICS_FILE
    if not path.is_file():
        return None
    return RunMetrics.from_dict(artifacts.read_json(path), str(path))


def run(
    base: Mapping[str, Any],
    planned: Sequence[Point],
    out: str | Path | None,
    kind: str,
    *,
    progress: bool = False,
    on_note: Callable[[str], None] | None = None,
    on_result: Callable[[Path, PointResult], None] | None = None,
) -> tuple[Path, list[PointResult]]:
    """Fit (or read back) every point; ``on_result`` sees the experiment folder and each result.

    Every config is validated, plugins included, before the first fit. Under torchrun every rank
    trains and rank 0 alone gets results.
    """
    if not planned:
        raise ConfigError("nothing to fit: give --sharing NAME[,NAME...], --variant NAME:KEY=VALUE or --grid KEY=V1,V2")
    _check_points(planned)
    configs = [api.as_config(config_for(base, p.assignments)) for p in planned]
    for config in configs:
        ResolvedRun(config)
    group, _ = distributed.join(resolve_device(configs[0].train.device))
    folder = group.on_main(lambda: _open(out, kind, base, planned))
    results: list[PointResult] = []
    for point, config in zip(planned, configs, strict=True):
        run_dir = folder / point.folder
        done = _finished(run_dir)
        if done is not None:
            result = PointResult(point, done, run_dir, reused=True)
        else:
            if (run_dir / artifacts.RESUME_FILE).is_file():
                fitted = api.fit(resume=run_dir, progress=progress, on_note=on_note)
            else:
                if run_dir.is_dir() and any(run_dir.iterdir()):
                    # Killed before its first snapshot: nothing finished to keep; fit it again.
                    group.on_main(functools.partial(artifacts.mark_failed, run_dir, "an unfinished point of an interrupted experiment"))
                fitted = api.fit(config, out=run_dir, progress=progress, on_note=on_note)
            if fitted.metrics is None:  # another rank of a distributed run: rank 0 reports
                continue
            result = PointResult(point, fitted.metrics, run_dir)
        results.append(result)
        if on_result is not None:
            on_result(folder, result)
    return folder, results
