"""A run from configuration to run folder: load the items, build the model, train, evaluate, write.

:func:`prepare` turns a config into plugins, items and a freshly seeded model; :func:`fit_run`
trains it with :class:`~inrkit.training.trainer.Trainer` and writes a :class:`~inrkit.runs.folder.RunFolder`.
:mod:`inrkit.api` (``fit``, ``encode``) is the public face of these two. Distributed runs take
the same path: the process group decides who trains which items and who writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch

from inrkit import files
from inrkit._version import __version__
from inrkit.config import ResolvedRun, RunConfig
from inrkit.devices import resolve_device
from inrkit.errors import ConfigError, DataError, StorageError, TrainingError, TrainingInterrupted, signal_number
from inrkit.factory import build_model, run_spec
from inrkit.interfaces import Callback, INRModel, Item
from inrkit.limits import available_memory, format_bytes, free_disk, memory_check_enabled, unwritable_reason
from inrkit.names import unique_safe_names
from inrkit.nn import count_parameters, state_bytes, trainable_bytes
from inrkit.plugins import PluginRegistry
from inrkit.results import Evaluation, RunMetrics, TrainResult
from inrkit.runs import layout
from inrkit.runs.folder import RunFolder
from inrkit.training.distributed import ProcessGroup, join
from inrkit.training.evaluate import evaluate
from inrkit.training.points import CODE_DTYPES, integer_codes
from inrkit.training.trainer import CallbackList, Trainer, fit_memory


@dataclasses.dataclass
class FitResult:
    """What :func:`inrkit.fit` returns: the metrics, the trained model and where the run was saved."""

    config: RunConfig
    #: ``None`` on the other ranks of a distributed run: they hold the model but no metrics.
    metrics: RunMetrics | None
    model: INRModel
    items: list[Item]
    #: Each item's reconstruction in [0, 1], rendered on demand a block of items at a time (see
    #: :class:`~inrkit.training.evaluate.Reconstructions`); ``list(...)`` holds them all.
    reconstructions: Sequence[np.ndarray]
    run_dir: Path | None
    #: False on the other ranks of a distributed run.
    is_main: bool = True


@dataclasses.dataclass
class Prepared:
    """A config's plugins, its device, the loaded items and a freshly seeded model (on the CPU)."""

    resolved: ResolvedRun
    device: torch.device
    items: list[Item]
    model: INRModel


def prepare(cfg: RunConfig, registry: PluginRegistry, channels: int | None = None) -> Prepared:
    """Resolve the plugins, load and check the items, and build the model from ``train.seed``."""
    resolved = ResolvedRun(cfg, registry)
    resolved.config = resolved.normalized_config()
    device = resolve_device(resolved.config.train.device)
    items = load_items(resolved)
    if channels is not None and items[0].channels != channels:
        raise DataError(f"the new items have {items[0].channels} channel(s), the run's items {channels}")
    shapes = [resolved.signal.train_view(it).shape[:-1] for it in items]
    spec = run_spec(resolved.config, resolved.signal.in_dim, shapes, items[0].channels)
    check_memory(resolved, spec, items, device)
    torch.manual_seed(resolved.config.train.seed)
    return Prepared(resolved, device, items, build_model(resolved.activation, resolved.sharing, spec))


def check_memory(resolved: ResolvedRun, spec: Any, items: Sequence[Item], device: torch.device) -> None:
    """Refuse a fit that cannot fit in memory, before the model is built: the model is built on
    the meta device (nothing allocated) and :func:`~inrkit.training.trainer.fit_memory` estimates the rest.
    ``INRKIT_MEMORY_CHECK=0`` turns the refusal off."""
    if not memory_check_enabled():
        return
    # The targets counted as float32: no pass over the data just to refuse a fit.
    parts = memory_parts(resolved, spec, [resolved.signal.eval_view(it).shape[:-1] for it in items], device)
    if parts is None:
        return
    on_device = ("parameters", "gradients", "optimiser", "optimiser step", "targets", "activations")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        checks = [(sum(parts[k] for k in on_device), int(free), f"free on {device}"),
                  (parts["evaluation"], available_memory(), "of memory available")]
    else:
        checks = [(sum(parts.values()), available_memory(), "of memory available")]
    for need, have, where in checks:
        if have is not None and need > have:
            shown = ", ".join(f"{k} {format_bytes(v)}" for k, v in parts.items() if v)
            raise ConfigError(
                f"this run needs about {format_bytes(need)} of memory ({shown}), but this machine has "
                f"{format_bytes(have)} {where}; use a smaller --width or --layers, fewer or smaller items "
                f"(signal.max_side), or train.chunk_points (INRKIT_MEMORY_CHECK=0 skips this estimate)"
            )


def memory_parts(
    resolved: ResolvedRun, spec: Any, eval_shapes: Sequence[Sequence[int]], device: torch.device,
    train_arrays: Sequence[np.ndarray] | None = None,
) -> dict[str, int] | None:
    """:func:`~inrkit.training.trainer.fit_memory` of this run's model, built on the meta device (nothing is
    allocated); ``None`` for a strategy that cannot be built there. ``train_arrays`` tell how
    compactly the targets are stored (float32 when not given)."""
    try:
        with torch.device("meta"):
            meta = build_model(resolved.activation, resolved.sharing, spec)
    except Exception:  # noqa: BLE001 - a strategy that cannot build on the meta device is not estimated
        return None
    coded = integer_codes(train_arrays) if train_arrays is not None else None
    target_bytes = 4 if coded is None else CODE_DTYPES[coded[0]].itemsize
    return fit_memory(meta, list(spec.item_shapes), eval_shapes, spec.out_dim, resolved.config.train, device, target_bytes)


def load_items(resolved: ResolvedRun) -> list[Item]:
    """The config's data loaded through its signal, and checked (:func:`check_items`)."""
    items = resolved.signal.load(resolved.config.data)
    check_items(items, resolved.signal.name)
    return items


def check_items(items: list[Item], signal_name: str) -> None:
    """Items exist, none is empty, all have the same channels and dimensionality."""
    if not items:
        raise DataError(f"signal {signal_name!r} loaded no items")
    channels = {item.channels for item in items}
    ndims = {item.data.ndim for item in items}
    if len(channels) > 1 or len(ndims) > 1:
        kinds: dict[tuple[int, int], list[Item]] = {}
        for it in items:  # one example per kind: a 100,000-item message would be unreadable
            kinds.setdefault((it.channels, it.data.ndim), []).append(it)
        shown = [f"{len(group):,} like {group[0].name}: {group[0].data.shape}" for group in kinds.values()]
        raise DataError(
            "items differ in channel count or dimensionality (" + "; ".join(shown)
            + "); all items of a run must have the same channels"
        )
    for item in items:
        if item.data.size == 0:
            raise DataError(f"item {item.name!r} is empty")
    # Item names become file names (recon/<name>.png, decode --all): whatever a signal read them
    # from, they are made safe and distinct here; ordinary names stay as they are.
    for item, name in zip(items, unique_safe_names(item.name for item in items), strict=True):
        item.name = name


@dataclasses.dataclass
class RunSession:
    """One :func:`fit_run` in progress: what its named steps (:func:`begin`, :func:`open_folder`,
    :func:`train`, :func:`finish`) share."""

    prepared: Prepared
    group: ProcessGroup
    #: This process's device (under torchrun: its own card).
    device: torch.device
    trainer: Trainer
    #: The config's callbacks (``train.callbacks``), then the caller's.
    callbacks: list[Callback]
    plots: bool
    encoded_from: str | None
    #: Whether ``recon/`` receives every item's reconstruction.
    recon: bool = True
    #: The run folder on rank 0 once opened; ``None`` when nothing is saved and on the other ranks.
    folder: RunFolder | None = None
    #: ``time.perf_counter()`` when training started (``metrics.total_seconds`` counts from it).
    started: float = 0.0
    #: The experiment the fit belongs to (the callbacks' ``context.group``).
    run_group: str | None = None


def fit_run(
    prepared: Prepared,
    *,
    out: str | Path | None,
    save: bool,
    callbacks: Sequence[Callback] = (),
    plots: bool = False,
    recon: bool = True,
    encoded_from: str | None = None,
    resume_dir: Path | None = None,
    resume_state: dict[str, Any] | None = None,
    run_group: str | None = None,
) -> FitResult:
    """Train the model's trainable parameters on the items, evaluate, write the run folder.

    ``callbacks`` run after the config's own (``train.callbacks``); after their ``on_fit_end``
    they hear of the written results (``on_results``). ``run_group`` names the experiment the fit
    belongs to (``context.group``, by which trackers group their runs). Without ``recon`` the run
    folder holds no ``recon/`` (the checkpoint renders every item later). Under torchrun the items are
    split across the processes; rank 0 evaluates and writes, the other ranks return the trained
    model without metrics (``FitResult.is_main`` is false there).

    The disk space the run's files need is checked before training. A failure after the run
    folder was created (divergence, an interruption before any snapshot, a bug) marks the folder
    failed (``failed.json``), unless it holds a snapshot to resume from; a new run with the same
    ``out`` replaces a failed folder. An interruption anywhere (Ctrl-C, or SIGTERM delivered as
    :class:`~inrkit.errors.Terminated`) is a :class:`~inrkit.errors.TrainingInterrupted`.

    The steps, in order: :func:`begin`, :func:`open_folder`, :func:`train`, :func:`finish`.
    """
    session = begin(prepared, callbacks=callbacks, plots=plots, encoded_from=encoded_from)
    session.run_group = run_group
    session.recon = recon
    open_folder(session, out=out, save=save, resume_dir=resume_dir)
    try:
        return finish(session, train(session, resume_state))
    except KeyboardInterrupt as exc:  # outside the training loop: loading, compiling, evaluating, writing
        error = TrainingInterrupted("interrupted before training could save a snapshot", signal_number(exc))
        _mark_failed(session.folder, error)
        raise error from None
    except BaseException as exc:
        _mark_failed(session.folder, exc)
        raise


def begin(
    prepared: Prepared, *, callbacks: Sequence[Callback] = (), plots: bool = False, encoded_from: str | None = None
) -> RunSession:
    """Join the process group, build the trainer and the callbacks, and refuse what the group
    cannot train, before anything is written."""
    resolved, items, model = prepared.resolved, prepared.items, prepared.model
    group, device = join(prepared.device)
    trainer = Trainer(resolved.config.train, device=device)
    group.check_model(model, resolved.sharing.name)
    group.items_of(len(items))
    hooks = resolved.create_callbacks() + list(callbacks)
    return RunSession(prepared, group, device, trainer, hooks, plots, encoded_from)


def open_folder(session: RunSession, *, out: str | Path | None, save: bool, resume_dir: Path | None = None) -> None:
    """Open the run folder (a new one, or ``resume_dir`` to continue) after checking that the
    disk has room for the run's files. Rank 0 opens it; a refusal there stops every rank with
    the same message. Nothing is opened when nothing is saved."""
    prepared = session.prepared
    resolved = prepared.resolved

    def create() -> RunFolder | None:
        if resume_dir is None and not save:
            return None
        check_disk(resume_dir or (Path(out) if out is not None else Path("runs")), prepared, session.plots, session.recon)
        if resume_dir is not None:
            files.check_writable(resume_dir)
            (resume_dir / layout.FAILED_FILE).unlink(missing_ok=True)  # continuing: no longer failed
            return RunFolder.reopen(resume_dir)
        return RunFolder.create(out, f"{resolved.activation.name}-{resolved.sharing.name}", resolved.config)

    folder = session.group.on_main(create)
    session.folder = folder if session.group.is_main else None  # only rank 0 writes


def train(session: RunSession, resume_state: dict[str, Any] | None = None) -> TrainResult:
    """Fit the model with the session's trainer: snapshots go to the run folder, rank 0
    evaluates every item's evaluation view."""
    prepared, folder = session.prepared, session.folder
    items, signal, cfg = prepared.items, prepared.resolved.signal, prepared.resolved.config

    def evaluator(m: INRModel, step: int, final: bool) -> Evaluation:
        return evaluate(m, items, signal, session.device, step=step, final=final)

    session.started = time.perf_counter()
    return session.trainer.fit(
        prepared.model,
        [signal.train_view(item) for item in items],
        callbacks=session.callbacks,
        evaluator=evaluator,
        item_names=[item.name for item in items],
        run_dir=folder.path if folder is not None else None,
        run_config=cfg.model_dump(mode="json"),
        resume_state=resume_state,
        on_snapshot=folder.save_snapshot if folder is not None else None,
        group=session.group,
        run_group=session.run_group,
        results_follow=True,
    )


def finish(session: RunSession, result: TrainResult) -> FitResult:
    """The metrics of the fit, and the run folder's results written (checkpoint, metrics,
    reconstructions, figures). Rank 0 finishes while the others wait; an error there stops every
    rank with its message, and all ranks leave together."""
    prepared, folder, trainer, group = session.prepared, session.folder, session.trainer, session.group
    cfg, model, items = prepared.resolved.config, prepared.model, prepared.items

    def write() -> FitResult:
        run_dir = folder.path if folder is not None else None
        try:
            metrics, recons = run_metrics(prepared, result, trainer, group.world_size, session.encoded_from)
            if folder is not None:
                metadata = checkpoint_metadata(prepared, session.encoded_from)
                folder.write_results(
                    model, metadata, metrics, prepared.resolved.signal, items, recons, plots=session.plots, recon=session.recon,
                    started=session.started, final_snapshot=trainer.final_snapshot,
                )
            else:
                metrics.total_seconds = time.perf_counter() - session.started
        except BaseException:
            if trainer.context is not None:  # the callbacks still close what they kept open for the results
                with contextlib.suppress(Exception):
                    CallbackList(session.callbacks).on_results(trainer.context, None, run_dir)
            raise
        if trainer.context is not None:
            CallbackList(session.callbacks).on_results(trainer.context, metrics, run_dir)
        return FitResult(cfg, metrics, model, items, recons, run_dir)

    done: list[FitResult] = []
    group.on_main(lambda: done.append(write()))
    return done[0] if done else FitResult(cfg, None, model, items, [], None, is_main=False)


def _mark_failed(folder: RunFolder | None, exc: BaseException) -> None:
    """After a failure: mark the run folder failed (``failed.json``) unless it holds something to
    keep: a finished run, or a snapshot to resume from (after an interruption, a failed write, a
    refused ``--resume``; a run that diverged is marked even then, since resuming it diverges
    again). The error's message then says that a run with the same ``--out`` replaces the folder."""
    if folder is None or (folder.path / layout.METRICS_FILE).exists():
        return
    if (folder.path / layout.RESUME_FILE).is_file() and not isinstance(exc, TrainingError):
        return
    if not isinstance(exc, Exception):
        return  # SystemExit and the like: not a failure of the run
    message = str(exc).rstrip(".")
    if not layout.mark_failed(folder.path, message):
        return
    note = (
        f"the run folder {folder.path} is marked failed ({layout.FAILED_FILE}); "
        f"a run with --out {folder.path} replaces it"
    )
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{message}; {note}", *exc.args[1:])


#: Bytes set aside for ``metrics.json``, ``config.json`` and the figures of ``plots/``.
SMALL_FILES_BYTES = 1 << 20
PLOTS_BYTES = 32 << 20


def check_disk(target: Path, prepared: Prepared, plots: bool, recon: bool = True) -> None:
    """Refuse a run whose files cannot fit on the disk that will hold them, before training: the
    checkpoint and snapshots (their sizes follow from the model), the reconstructions (at most
    their raw size) and the figures. An unwritable place is refused as such first (a read-only
    file system reports no free space)."""
    reason = unwritable_reason(target)
    if reason is not None:
        raise StorageError(f"cannot write the run into {os.path.abspath(target)}: {reason}; choose another --out")
    free = free_disk(target)
    if free is None:
        return
    model, items, signal = prepared.model, prepared.items, prepared.resolved.signal
    checkpoint = state_bytes(model) + (64 << 10)
    trainable = trainable_bytes(model)
    snapshot = checkpoint + 2 * trainable
    # The snapshot being replaced and its successor exist at once; Ctrl-C writes one too.
    snapshots = snapshot * (2 if prepared.resolved.config.train.checkpoint_every else 1)
    recon_bytes = sum(
        math.prod(signal.eval_view(it).shape) * (2 if it.meta.get("bit_depth") == 16 else 1) * 102 // 100 + 4096 for it in items
    ) if recon else 0
    parts = {
        "checkpoint": checkpoint, "snapshots": snapshots, "reconstructions": recon_bytes,
        "metrics": SMALL_FILES_BYTES + 4096 * len(items), "figures": PLOTS_BYTES if plots else 0,
    }
    need = sum(parts.values())
    if need > free:
        shown = ", ".join(f"{k} {format_bytes(v)}" for k, v in parts.items() if v)
        raise StorageError(
            f"this run's files need about {format_bytes(need)} ({shown}), but only {format_bytes(free)} is free on the "
            f"disk that holds {os.path.abspath(target)}; free some space or choose another --out"
        )


def check_untrusted_callbacks(config: RunConfig, source: str) -> None:
    """A config read from a run folder (``--resume``'s ``config.json``, ``encode``'s checkpoint)
    is data: its callbacks may not write outside the run folder. A callback option that is an
    absolute path or climbs out with ``..`` is refused, naming it and the file."""
    for choice in config.train.callbacks:
        for key, value in choice.options.items():
            if not isinstance(value, str):
                continue
            for flavour in (PurePosixPath, PureWindowsPath):
                path = flavour(value)
                if path.is_absolute() or path.drive or ".." in path.parts:
                    raise ConfigError(
                        f"callback {choice.name!r}: option {key}={value!r} from {source} points outside the run "
                        "folder; a config read from a run folder may only name paths inside it"
                    )


def run_metrics(
    prepared: Prepared, result: TrainResult, trainer: Trainer, processes: int, encoded_from: str | None
) -> tuple[RunMetrics, Sequence[np.ndarray]]:
    """``metrics.json`` of a finished fit (its final evaluation and the facts of the run), and the
    reconstructions of that evaluation."""
    resolved = prepared.resolved
    if result.evaluation is None:
        raise RuntimeError("the fit was not evaluated (only rank 0 evaluates)")
    metrics = RunMetrics.from_evaluation(
        result.evaluation,
        params=count_parameters(prepared.model),
        steps=result.steps,
        seconds=result.seconds,
        total_seconds=None,
        lr=trainer.learning_rate(prepared.model),
        device=str(trainer.device),
        processes=processes,
        activation=resolved.activation.name,
        sharing=resolved.sharing.name,
        signal=resolved.signal.name,
        inrkit_version=__version__,
        history=result.history,
        encoded_from=encoded_from,
        compile_seconds=result.compile_seconds,
        compiled=result.compiled,
        compile_reason=result.compile_reason,
    )
    return metrics, result.evaluation.reconstructions


def checkpoint_metadata(prepared: Prepared, encoded_from: str | None) -> dict[str, Any]:
    """The checkpoint's metadata: config, plugin provenance, items and their shapes, counts."""
    resolved, items = prepared.resolved, prepared.items
    signal = resolved.signal
    plugins = {}
    for kind in ("activation", "sharing", "signal"):
        entry = resolved.registry.entry(kind, getattr(resolved, kind).name)
        plugins[kind] = {"name": entry.name, "plugin": entry.plugin, "distribution": entry.distribution, "version": entry.version}
    metadata: dict[str, Any] = {
        "config": resolved.config.model_dump(mode="json"),
        "plugins": plugins,
        "items": [
            {
                "name": it.name,
                "shape": list(signal.train_view(it).shape[:-1]),
                "eval_shape": list(signal.eval_view(it).shape[:-1]),
                "channels": it.channels,
            }
            for it in items
        ],
        "params": count_parameters(prepared.model).as_dict(),
        "inrkit_version": __version__,
    }
    if encoded_from is not None:
        metadata["encoded_from"] = encoded_from
    return metadata
