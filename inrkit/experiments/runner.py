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
import hashlib
import json
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from inrkit import api, files
from inrkit.config import DEFAULT_SHARING, ResolvedRun, RunConfig, apply_overrides
from inrkit.devices import resolve_device
from inrkit.errors import ConfigError, DataError, TrainingError, TrainingInterrupted
from inrkit.results import RunMetrics
from inrkit.runs import layout
from inrkit.training import distributed

EXPERIMENT_FILE = "experiment.json"
EXPERIMENT_FORMAT = "inrkit.experiment"
EXPERIMENT_VERSION = 1
LOCK_FILE = ".lock"
#: Longest variant folder name; longer names are cut and end in a hash of the full name.
MAX_FOLDER_NAME = 96
#: Keys of the base config that do not change what is fitted: a resume may change them.
_NOT_RECIPE = (("train", "device"), ("train", "callbacks"), ("train", "checkpoint_every"))


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of a comparison: a label and the ``--set`` assignments that make it."""

    name: str
    assignments: tuple[str, ...]

    @property
    def folder_name(self) -> str:
        """The variant's run folder: letters, digits, ``.``, ``_`` and ``-`` only, never hidden and
        never ``.`` or ``..``."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", self.name).strip("-").lstrip(".").strip("-") or "variant"
        if len(slug) > MAX_FOLDER_NAME:  # every file system takes 255 bytes; leave room for the rest
            digest = hashlib.sha256(self.name.encode()).hexdigest()[:12]
            slug = f"{slug[: MAX_FOLDER_NAME - 13]}-{digest}"
        return slug


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

    def item_scores(self, metric: str = "psnr") -> dict[str, float]:
        """Each item's score; items without one (a perfect fit has no finite PSNR) are left out."""
        scores = {item.name: item.scores().get(metric) for item in self.metrics.items}
        return {name: float(v) for name, v in scores.items() if v is not None}


@dataclasses.dataclass
class FailedPoint:
    """A point whose fit failed (it diverged, or its data could not be used): the others go on."""

    point: Point
    error: str
    run_dir: Path


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


def _recipe_of(base: Mapping[str, Any], seeded: bool) -> Any:
    """The base config as it decides what is fitted: without the device, the callbacks and the
    snapshot interval, and without ``train.seed`` when ``--seeds`` chooses the seeds."""
    recipe = _plain(base)
    dropped = _NOT_RECIPE + ((("train", "seed"),) if seeded else ())
    for section, key in dropped:
        if isinstance(recipe.get(section), dict):
            recipe[section].pop(key, None)
            if not recipe[section]:
                del recipe[section]
    return recipe


def _check_points(planned: Sequence[Point]) -> None:
    folders = [p.folder.casefold() for p in planned]  # macOS and Windows ignore case
    duplicates = sorted({f for f in folders if folders.count(f) > 1})
    if duplicates:
        raise ConfigError(f"variant names must differ (as folder names, ignoring case): {', '.join(duplicates)}")


def _nested(a: str, b: str) -> bool:
    a, b = a.casefold(), b.casefold()
    return a != b and (a.startswith(b + "/") or b.startswith(a + "/"))


def _read_manifest(path: Path, kind: str, recipe: Any) -> dict[str, Any]:
    manifest = files.read_json(path)
    folder = path.parent
    if not isinstance(manifest, dict) or manifest.get("format") != EXPERIMENT_FORMAT:
        raise ConfigError(f"{path} is not an inrkit experiment file; choose a new --out")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError(f"{path} is damaged (its version is {version!r}); choose a new --out")
    if version > EXPERIMENT_VERSION:
        raise ConfigError(f"{path} was written by a newer inrkit (version {version}); upgrade inrkit")
    if manifest.get("kind") != kind:
        raise ConfigError(f"--out {folder} holds an `inrkit {manifest.get('kind')}`, not an `inrkit {kind}`; choose a new folder")
    if manifest.get("base") != recipe:
        raise ConfigError(
            f"--out {folder} holds an experiment with a different base config; resume it with the same "
            "options, or choose a new folder (nothing was changed)"
        )
    points = manifest.get("points")
    if not isinstance(points, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("assignments"), list) for v in points.values()
    ):
        raise ConfigError(f"{path} is damaged (its points are not a table of assignments); choose a new --out")
    return manifest


def _recipe(planned: Sequence[Point]) -> dict[str, Any]:
    return {p.folder: {"variant": p.variant.name, "assignments": list(p.assignments)} for p in planned}


def _check_folder(out: str | Path | None, kind: str, base: Mapping[str, Any], planned: Sequence[Point], seeded: bool) -> dict[str, Any] | None:
    """Everything :func:`_open` refuses, checked without writing: the earlier manifest (its kind,
    base config and recipes) and every point's run folder. Returns the earlier manifest, or
    ``None`` for a new folder (which :func:`~inrkit.runs.layout.new_run_folder` then checks)."""
    manifest_path = Path(out) / EXPERIMENT_FILE if out is not None else None
    if manifest_path is None or not manifest_path.is_file():
        return None
    folder = manifest_path.parent
    manifest = _read_manifest(manifest_path, kind, _recipe_of(base, seeded))
    known: dict[str, Any] = manifest["points"]
    for name, spec in _recipe(planned).items():
        if name in known and known[name]["assignments"] != spec["assignments"]:
            raise ConfigError(
                f"--out {folder}: {name} was fitted with {known[name]['assignments']}, now asked for "
                f"{spec['assignments']}; rename the variant or choose a new folder (nothing was changed)"
            )
        clash = next((k for k in known if _nested(k, name)), None)
        if clash is not None:
            raise ConfigError(
                f"--out {folder} holds {clash}, which cannot sit beside {name} (give --seeds the same way "
                "as before, or choose a new folder; nothing was changed)"
            )
    for point in planned:
        _survey(folder / point.folder)
    return manifest


def _survey(run_dir: Path) -> None:
    """Refuse, before anything is written, a point folder that resuming could not use: files that
    are no run of this experiment, or a finished run whose ``metrics.json`` is damaged."""
    if _finished(run_dir) is not None or not run_dir.is_dir() or not any(run_dir.iterdir()):
        return
    if (run_dir / layout.RESUME_FILE).is_file() or layout.is_failed_run(run_dir) or _unfinished_single_run(run_dir):
        return
    raise ConfigError(
        f"{run_dir} holds files that are not an unfinished run of this experiment; "
        "move them away or choose a new --out (nothing was changed)"
    )


def _open(out: str | Path | None, kind: str, base: Mapping[str, Any], planned: Sequence[Point], seeded: bool) -> Path:
    """Create the experiment folder, or reopen one written by the same kind and base config, and
    lock it against a second process. Nothing is written before every check has passed."""
    recipe = _recipe(planned)
    manifest = _check_folder(out, kind, base, planned, seeded)
    if manifest is not None:
        folder = Path(out)  # type: ignore[arg-type]  # a manifest was found, so out is a folder
        _lock(folder)
        manifest["points"] = {**manifest["points"], **recipe}
    else:
        folder = layout.new_run_folder(out, kind)
        _lock(folder)
        manifest = {
            "format": EXPERIMENT_FORMAT, "version": EXPERIMENT_VERSION, "kind": kind,
            "base": _recipe_of(base, seeded), "points": recipe,
        }
    files.write_json(folder / EXPERIMENT_FILE, manifest)
    return folder


def check(base: Mapping[str, Any], planned: Sequence[Point], out: str | Path | None, kind: str) -> list[RunConfig]:
    """What :func:`run` refuses, refused without fitting or writing anything: the points, every
    point's config (plugins included), and a resumed folder's recipe and run folders. Returns the
    points' validated configs. A command that writes its own files beside the fits (``rd``) calls
    this before its first write."""
    if not planned:
        raise ConfigError("nothing to fit: give --sharing NAME[,NAME...], --variant NAME:KEY=VALUE or --grid KEY=V1,V2")
    _check_points(planned)
    configs = [api.as_config(config_for(base, p.assignments)) for p in planned]
    for config in configs:
        ResolvedRun(config)
    seeded = any(p.seed is not None for p in planned)
    if _check_folder(out, kind, base, planned, seeded) is None and out is not None:
        layout.check_new_run_folder(Path(out))
    return configs


def _lock(folder: Path) -> None:
    """Refuse a second process writing into the same experiment (each would refit the other's
    unfinished points); a lock left by a process that no longer runs on this host is taken over."""
    path = folder / LOCK_FILE
    host = socket.gethostname()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner_host, _, pid_text = path.read_text(encoding="utf-8").partition(" ")
                pid = int(pid_text)
            except (OSError, ValueError):
                owner_host, pid = "", 0
            if owner_host == host and pid > 0 and not _alive(pid):
                path.unlink(missing_ok=True)
                continue
            raise ConfigError(
                f"another inrkit process ({owner_host or '?'} pid {pid or '?'}) is writing into {folder}; "
                f"wait for it, or delete {path} if it has ended"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot lock {folder}: {exc.strerror or exc}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"{host} {os.getpid()}")
        return
    raise ConfigError(f"cannot lock {folder}: {path} keeps reappearing")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _unfinished_single_run(run_dir: Path) -> bool:
    """A run folder this experiment started and never finished: a config, no metrics anywhere."""
    return (run_dir / layout.CONFIG_FILE).is_file() and not any(run_dir.rglob(layout.METRICS_FILE))


def _finished(run_dir: Path) -> RunMetrics | None:
    path = run_dir / layout.METRICS_FILE
    if not path.is_file():
        return None
    return RunMetrics.from_dict(files.read_json(path), str(path))


def run(
    base: Mapping[str, Any],
    planned: Sequence[Point],
    out: str | Path | None,
    kind: str,
    *,
    progress: bool = False,
    on_note: Callable[[str], None] | None = None,
    on_result: Callable[[Path, PointResult], None] | None = None,
    on_failed: Callable[[Path, FailedPoint], None] | None = None,
    retry_failed: bool = False,
) -> tuple[Path, list[PointResult]]:
    """Fit (or read back) every point; ``on_result`` sees the experiment folder and each result.

    Every config is validated, plugins included, before the first fit. A point whose fit fails
    (it diverges, its data is refused) is kept marked failed (``failed.json``) and reported to
    ``on_failed``, and the others go on; given the same ``out`` again it is skipped (a refit with
    the same seed fails the same way) unless ``retry_failed``. Under torchrun every rank trains
    and rank 0 alone gets results.
    """
    configs = check(base, planned, out, kind)
    seeded = any(p.seed is not None for p in planned)
    group, _ = distributed.join(resolve_device(configs[0].train.device))
    folder = group.on_main(lambda: _open(out, kind, base, planned, seeded))
    results: list[PointResult] = []
    run_group = f"{kind}:{folder.name}"  # the callbacks' context.group: trackers group the fits by it
    try:
        for point, config in zip(planned, configs, strict=True):
            run_dir = folder / point.folder
            done = _finished(run_dir)
            if done is not None:
                if group.is_main:  # another rank of a distributed run: rank 0 reports
                    results.append(PointResult(point, done, run_dir, reused=True))
                    if on_result is not None:
                        on_result(folder, results[-1])
                continue
            failed = _earlier_failure(run_dir)
            if failed is not None and not retry_failed:
                if group.is_main and on_failed is not None:
                    on_failed(folder, FailedPoint(point, f"{failed} (failed before; --retry-failed fits it again)", run_dir))
                continue
            try:
                if (run_dir / layout.RESUME_FILE).is_file():
                    fitted = api.fit(resume=run_dir, progress=progress, on_note=on_note, run_group=run_group)
                else:
                    if run_dir.is_dir() and any(run_dir.iterdir()) and not layout.is_failed_run(run_dir):
                        if not _unfinished_single_run(run_dir):
                            raise ConfigError(
                                f"{run_dir} holds files that are not an unfinished run of this experiment; "
                                "move them away or choose a new --out (nothing was changed)"
                            )
                        # Killed before its first snapshot: nothing finished to keep; fit it again.
                        group.on_main(functools.partial(
                            layout.mark_failed, run_dir, "an unfinished point of an interrupted experiment"
                        ))
                    fitted = api.fit(config, out=run_dir, progress=progress, on_note=on_note, run_group=run_group)
            except (TrainingError, DataError) as exc:
                if isinstance(exc, TrainingInterrupted):
                    raise
                if group.is_main and on_failed is not None:
                    on_failed(folder, FailedPoint(point, str(exc), run_dir))
                continue
            if fitted.metrics is None:  # another rank of a distributed run: rank 0 reports
                continue
            results.append(PointResult(point, fitted.metrics, run_dir))
            if on_result is not None:
                on_result(folder, results[-1])
    finally:
        if group.is_main:
            (folder / LOCK_FILE).unlink(missing_ok=True)
    return folder, results


@dataclasses.dataclass
class Collected:
    """What an experiment has produced so far: the results by variant name, and the failures."""

    by_variant: dict[str, list[PointResult]] = dataclasses.field(default_factory=dict)
    failures: list[FailedPoint] = dataclasses.field(default_factory=list)

    def failure_records(self) -> list[dict[str, Any]]:
        """The failures as JSON records (``setting``, ``seed``, ``error``)."""
        return [{"setting": f.point.variant.name, "seed": f.point.seed, "error": f.error} for f in self.failures]


def run_collecting(
    base: Mapping[str, Any],
    planned: Sequence[Point],
    out: str | Path | None,
    kind: str,
    write: Callable[[Path, Collected], None],
    *,
    progress: bool = False,
    on_note: Callable[[str], None] | None = None,
    on_point: Callable[[PointResult], None] | None = None,
    on_failed: Callable[[FailedPoint], None] | None = None,
    retry_failed: bool = False,
) -> tuple[Path, Collected]:
    """:func:`run`, with ``write`` called (to rewrite the experiment's tables) after every result
    and every failure; an experiment whose every point failed is an error."""
    collected = Collected()

    def record(folder: Path, result: PointResult) -> None:
        collected.by_variant.setdefault(result.point.variant.name, []).append(result)
        write(folder, collected)
        if on_point is not None:
            on_point(result)

    def failed(folder: Path, failure: FailedPoint) -> None:
        collected.failures.append(failure)
        write(folder, collected)
        if on_failed is not None:
            on_failed(failure)

    folder, results = run(
        base, planned, out, kind, progress=progress, on_note=on_note, on_result=record, on_failed=failed,
        retry_failed=retry_failed,
    )
    if collected.failures and not results:
        first = collected.failures[0]
        raise TrainingError(f"every fit failed; the first: {first.point.folder}: {first.error}")
    return folder, collected


def failure_lines(failures: Sequence[FailedPoint]) -> str:
    """The markdown lines naming the points left out of a table, and why."""
    if not failures:
        return ""
    lines = [f"- {f.point.variant.name}" + ("" if f.point.seed is None else f" seed {f.point.seed}") + f": {f.error}"
             for f in failures]
    return "\nNot in the table (their fits failed):\n\n" + "\n".join(lines) + "\n"


def _earlier_failure(run_dir: Path) -> str | None:
    """Why a point failed in an earlier run of the experiment (``None``: it did not, or it was
    only interrupted, which a rerun continues)."""
    if not layout.is_failed_run(run_dir) or (run_dir / layout.RESUME_FILE).is_file():
        return None
    try:
        record = files.read_json(run_dir / layout.FAILED_FILE)
    except Exception:  # noqa: BLE001 - an unreadable record is treated as a failure without reason
        return "failed"
    reason = str(record.get("error", "failed")) if isinstance(record, dict) else "failed"
    if "unfinished point" in reason or "interrupted" in reason.lower():
        return None
    return reason
