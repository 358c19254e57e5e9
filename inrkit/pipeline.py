"""A run from configuration to run folder: load the items, build the model, train, evaluate, write.

:func:`prepare` turns a config into plugins, items and a freshly seeded model; :func:`fit_run`
trains it with :class:`~inrkit.train.Trainer` and writes a :class:`~inrkit.runs.RunFolder`.
:mod:`inrkit.api` (``fit``, ``encode``) is the public face of these two. Distributed runs take
the same path: the process group decides who trains which items and who writes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inrkit._version import __version__
from inrkit.config import ResolvedRun, RunConfig
from inrkit.devices import resolve_device
from inrkit.distributed import join
from inrkit.errors import DataError
from inrkit.evaluate import evaluate
from inrkit.factory import build_model, run_spec
from inrkit.interfaces import Callback, INRModel, Item
from inrkit.nn import count_parameters
from inrkit.plugins import PluginRegistry
from inrkit.results import Evaluation, RunMetrics, TrainResult
from inrkit.runs import RunFolder
from inrkit.train import Trainer


@dataclasses.dataclass
class FitResult:
    """What :func:`inrkit.fit` returns: the metrics, the trained model and where the run was saved."""

    config: RunConfig
    #: ``None`` on the other ranks of a distributed run: they hold the model but no metrics.
    metrics: RunMetrics | None
    model: INRModel
    items: list[Item]
    reconstructions: list[np.ndarray]
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
    items = resolved.signal.load(resolved.config.data)
    check_items(items, resolved.signal.name)
    if channels is not None and items[0].channels != channels:
        raise DataError(f"the new items have {items[0].channels} channel(s), the run's items {channels}")
    torch.manual_seed(resolved.config.train.seed)
    shapes = [resolved.signal.train_view(it).shape[:-1] for it in items]
    spec = run_spec(resolved.config, resolved.signal.in_dim, shapes, items[0].channels)
    return Prepared(resolved, device, items, build_model(resolved.activation, resolved.sharing, spec))


def check_items(items: list[Item], signal_name: str) -> None:
    """Items exist, none is empty, all have the same channels and dimensionality."""
    if not items:
        raise DataError(f"signal {signal_name!r} loaded no items")
    channels = {item.channels for item in items}
    ndims = {item.data.ndim for item in items}
    if len(channels) > 1 or len(ndims) > 1:
        raise DataError(
            "items differ in channel count or dimensionality ("
            + ", ".join(f"{it.name}: {it.data.shape}" for it in items)
            + "); all items of a run must have the same channels"
        )
    for item in items:
        if item.data.size == 0:
            raise DataError(f"item {item.name!r} is empty")


def fit_run(
    prepared: Prepared,
    *,
    out: str | Path | None,
    save: bool,
    callbacks: Sequence[Callback] = (),
    plots: bool = False,
    encoded_from: str | None = None,
    resume_dir: Path | None = None,
    resume_state: dict[str, Any] | None = None,
) -> FitResult:
    """Train the model's trainable parameters on the items, evaluate, write the run folder.

    ``callbacks`` run after the config's own (``train.callbacks``). Under torchrun the items are
    split across the processes; rank 0 evaluates and writes, the other ranks return the trained
    model without metrics (``FitResult.is_main`` is false there).
    """
    resolved, items, model = prepared.resolved, prepared.items, prepared.model
    cfg, signal = resolved.config, resolved.signal
    group, device = join(prepared.device)
    trainer = Trainer(cfg.train, device=device)
    # Refuse before anything is written.
    group.check_model(model, resolved.sharing.name)
    group.items_of(len(items))
    hooks = resolved.create_callbacks() + list(callbacks)
    folder: RunFolder | None = None
    if resume_dir is not None:
        folder = RunFolder.reopen(resume_dir)
    elif save:
        label = f"{resolved.activation.name}-{resolved.sharing.name}"
        # Rank 0 creates it; a refusal there stops every rank with the same message.
        folder = group.on_main(lambda: RunFolder.create(out, label, cfg))
    if not group.is_main:
        folder = None  # only rank 0 writes

    def evaluator(m: INRModel, step: int, final: bool) -> Evaluation:
        return evaluate(m, items, signal, device, step=step, final=final)

    started = time.perf_counter()
    result = trainer.fit(
        model,
        [signal.train_view(item) for item in items],
        callbacks=hooks,
        evaluator=evaluator,
        item_names=[item.name for item in items],
        run_dir=folder.path if folder is not None else None,
        run_config=cfg.model_dump(mode="json"),
        resume_state=resume_state,
        on_snapshot=folder.save_snapshot if folder is not None else None,
        group=group,
    )

    def finish() -> FitResult:
        metrics, recons = run_metrics(prepared, result, trainer, group.world_size, encoded_from)
        if folder is not None:
            metadata = checkpoint_metadata(prepared, encoded_from)
            folder.write_results(model, metadata, metrics, signal, items, recons, plots=plots, started=started)
        else:
            metrics.total_seconds = time.perf_counter() - started
        return FitResult(cfg, metrics, model, items, recons, folder.path if folder is not None else None)

    # Rank 0 finishes while the others wait; an error there stops every rank with its message,
    # and all ranks leave together.
    done: list[FitResult] = []
    group.on_main(lambda: done.append(finish()))
    return done[0] if done else FitResult(cfg, None, model, items, [], None, is_main=False)


def run_metrics(
    prepared: Prepared, result: TrainResult, trainer: Trainer, processes: int, encoded_from: str | None
) -> tuple[RunMetrics, list[np.ndarray]]:
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
