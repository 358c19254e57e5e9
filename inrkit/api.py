"""The Python API: fit a run, encode new items into it, load a run folder, decode items.

The CLI is a thin layer over these functions, so research code gets the same behaviour::

    import inrkit
    result = inrkit.fit({"sharing": {"name": "minr"}, "data": ["photos/"]}, out="runs/demo")
    run = inrkit.load("runs/demo")
    image = run.decode("kodim01", scale=2)   # (H*2, W*2, 3) float32 in [0, 1]

Research code with its own training loop starts from :func:`inrkit.create_model` instead, or
trains an inrkit model with :class:`inrkit.Trainer`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import torch

from inrkit import files
from inrkit.config import DEMO_STEPS, ResolvedRun, RunConfig, merge, validate_run_config
from inrkit.devices import resolve_device, usable_here
from inrkit.errors import CheckpointError, ConfigError, DataError, InrkitError, format_validation_error
from inrkit.factory import create_model, run_spec
from inrkit.images import loading_progress
from inrkit.interfaces import Callback
from inrkit.limits import process_rss
from inrkit.nn import check_state, count_parameters
from inrkit.plugins import PluginRegistry, get_registry
from inrkit.results import ParamCounts
from inrkit.runs import checkpoint, layout
from inrkit.runs.fit import FitResult, check_untrusted_callbacks, fit_run, load_items, memory_parts, prepare
from inrkit.runs.folder import Run, load
from inrkit.runs.folder import verify as verify_run
from inrkit.training.trainer import Trainer


def as_config(config: RunConfig | Mapping[str, Any] | None = None, **sections: Any) -> RunConfig:
    """A validated :class:`RunConfig` from a config object or a (partial) dict plus overrides."""
    # Values the user did not set stay unset (pydantic's ``model_fields_set``), so presets such
    # as the sample demo's step count can tell a default from an explicit choice.
    if config is not None and not isinstance(config, (RunConfig, Mapping)):
        hint = " (to read a config file: inrkit.config.read_config_file(path))" if isinstance(config, (str, Path)) else ""
        raise ConfigError(f"config must be a RunConfig or a mapping of sections, not {type(config).__name__} {str(config)[:60]!r}{hint}")
    data = config.model_dump(exclude_unset=True) if isinstance(config, RunConfig) else dict(config or {})
    data = merge(data, {k: v for k, v in sections.items() if v is not None})
    return validate_run_config(data)


def data_sources(data: Any) -> list[str] | None:
    """``data`` as the config's list of files, folders or globs: one path or a sequence of them
    (``None``: the config's own); anything else is a :class:`~inrkit.errors.DataError` naming it."""
    if data is None:
        return None
    if isinstance(data, (str, Path)):
        return [str(data)]
    if isinstance(data, Sequence) and not isinstance(data, (bytes, bytearray)):
        wrong = next((d for d in data if not isinstance(d, (str, Path))), None)
        if wrong is None:
            return [str(d) for d in data]
        raise DataError(f"data must be paths (files, folders or globs), not {type(wrong).__name__} {str(wrong)[:60]!r}")
    raise DataError(f"data must be a path or a list of paths (files, folders or globs), not {type(data).__name__} {str(data)[:60]!r}")


def apply_demo_preset(config: RunConfig) -> tuple[RunConfig, list[str]]:
    """With no data (the signal's built-in samples), use the short demo schedule unless set."""
    if config.data or "steps" in config.train.model_fields_set:
        return config, []
    train = config.train.model_copy(update={"steps": DEMO_STEPS})
    train.model_fields_set.discard("steps")
    note = (
        f"no data given: fitting the {config.signal.name} signal's built-in samples with the demo "
        f"schedule ({DEMO_STEPS} steps; set --steps to change it)"
    )
    return config.model_copy(update={"train": train}), [note]


def parameter_counts(
    config: RunConfig | Mapping[str, Any] | None = None,
    *,
    n_items: int,
    item_shape: tuple[int, ...] | None = None,
    channels: int = 3,
    registry: PluginRegistry | None = None,
    item_shapes: Sequence[Sequence[int]] | None = None,
) -> ParamCounts:
    """Exact parameter counts for ``n_items`` items, without allocating or training the model.

    ``item_shape`` matters only to strategies that lay items out (default: 64 per axis of the
    config's signal); ``item_shapes`` gives each item its own (then ``n_items`` must match).
    """
    if n_items <= 0:
        raise ConfigError(f"the number of items must be positive (got {n_items})")
    if item_shapes is not None and len(item_shapes) != n_items:
        raise ConfigError(f"{len(item_shapes)} item shapes for {n_items} items")
    resolved = ResolvedRun(as_config(config), registry)
    in_dim = resolved.signal.in_dim
    cfg = resolved.config
    shapes = list(item_shapes) if item_shapes is not None else [item_shape or (64,) * in_dim] * n_items
    with torch.device("meta"):
        model = create_model(
            resolved.activation, resolved.sharing, item_shapes=shapes,
            width=cfg.model.width, layers=cfg.model.layers, in_dim=in_dim, out_dim=channels, registry=resolved.registry,
        )
    return count_parameters(model)


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """What :func:`memory_estimate` found: bytes by part, their total, and the items it counted."""

    #: Bytes by part: ``baseline``, ``items``, then :func:`~inrkit.training.trainer.fit_memory`'s parts.
    parts: dict[str, int]
    #: Each item's training shape (spatial axes), and their channel count.
    item_shapes: list[tuple[int, ...]]
    channels: int

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def memory_estimate(
    config: RunConfig | Mapping[str, Any] | None = None,
    *,
    data: Sequence[str] | None = None,
    item_shapes: Sequence[Sequence[int]] | None = None,
    channels: int = 3,
    registry: PluginRegistry | None = None,
) -> MemoryEstimate:
    """About how many bytes a fit of ``config`` holds at its peak, by part.

    The items come from ``data`` (loaded through the config's signal, as a fit loads them) or
    are ``item_shapes`` of ``channels`` channels. The parts are this process's resident memory
    before the items are loaded (``baseline``: Python, PyTorch and inrkit, after one small
    training step has started PyTorch's CPU runtime), the loaded items, and
    :func:`~inrkit.training.trainer.fit_memory`'s parts (the model's tensors, gradients and Adam state, the
    training targets, one chunk's activations, the evaluation's renders), the model built on
    PyTorch's meta device (nothing allocated). On the CPU the total estimates the fit's peak
    resident memory; on a GPU the model's parts live on the card instead.
    """
    if (data is None) == (item_shapes is None):
        raise ConfigError("give the items' data or their shapes (one of data= and item_shapes=)")
    _start_cpu_runtime()
    baseline = process_rss() or 0
    cfg = as_config(config)
    if data is not None:
        cfg = cfg.model_copy(update={"data": list(data)})
    resolved = ResolvedRun(cfg, registry)
    resolved.config = resolved.normalized_config()
    signal = resolved.signal
    if data is not None:
        items = load_items(resolved)
        train_views = [signal.train_view(it) for it in items]
        arrays: list[np.ndarray] | None = train_views
        shapes = [tuple(a.shape[:-1]) for a in train_views]
        eval_shapes = [tuple(signal.eval_view(it).shape[:-1]) for it in items]
        channels, loaded = items[0].channels, sum(int(it.data.nbytes) for it in items)
    else:
        if not item_shapes:
            raise ConfigError("item_shapes is empty: give at least one item")
        shapes = eval_shapes = [tuple(int(n) for n in s) for s in item_shapes]
        loaded = sum(math.prod(s) for s in shapes) * channels * 4
        arrays = None  # float32 targets assumed
    spec = run_spec(resolved.config, signal.in_dim, shapes, channels)
    parts = memory_parts(resolved, spec, eval_shapes, resolve_device(resolved.config.train.device), arrays)
    if parts is None:
        raise ConfigError(f"sharing {resolved.sharing.name!r} cannot be built without allocating it, so it is not estimated")
    return MemoryEstimate({"baseline": baseline, "items": loaded, **parts}, shapes, channels)


def _start_cpu_runtime() -> None:
    """One small training step on the CPU, so that the memory PyTorch's runtime takes once it
    has run (thread pools, kernel workspaces: about 115 MB on a 2-core machine) is part of the
    baseline that :func:`memory_estimate` measures."""
    layer = torch.nn.Linear(2, 64)
    optimizer = torch.optim.Adam(layer.parameters())
    torch.sin(layer(torch.rand(8192, 2))).square().mean().backward()
    optimizer.step()


def _on_this_machine(config: RunConfig) -> tuple[RunConfig, str | None]:
    """A saved config whose device this machine lacks (a run trained on ``cuda`` resumed or
    encoded on a laptop) runs on this machine's device instead; returns a note saying so."""
    name = config.train.device
    if usable_here(name):
        return config, None
    train = config.train.model_copy(update={"device": "auto"})
    note = f"the run was trained on {name!r}, which this machine does not have; continuing on 'auto'"
    return config.model_copy(update={"train": train}), note


def _callbacks(registry: PluginRegistry, progress: bool, callbacks: Sequence[Callback]) -> list[Callback]:
    """The caller's callbacks, with the progress bar first when asked for (and installed)."""
    bar = [registry.create("callback", "progress")] if progress and "progress" in registry.names("callback") else []
    return bar + list(callbacks)


def fit(
    config: RunConfig | Mapping[str, Any] | None = None,
    *,
    data: Sequence[str] | str | None = None,
    out: str | Path | None = None,
    save: bool = True,
    progress: bool = False,
    registry: PluginRegistry | None = None,
    on_note: Callable[[str], None] | None = None,
    plots: bool = False,
    recon: bool = True,
    resume: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    run_group: str | None = None,
) -> FitResult:
    """Fit a run: load the signal's items, build the shared model, train, evaluate, save.

    ``config`` is a :class:`RunConfig` or a (partial) dict of one; ``data`` replaces its
    ``data``. With ``save`` the run folder ``out`` (default ``runs/<time>-<activation>-<sharing>``)
    receives ``config.json``, ``metrics.json``, ``recon/`` and ``checkpoint.safetensors``.
    ``on_note`` receives informational messages (e.g. that the demo schedule is in use);
    ``plots`` draws training curves and reconstruction figures into ``<run>/plots/``;
    ``recon=False`` writes no ``<run>/recon/`` (every item's reconstruction: at 10^5 small items
    they take longer to write than the checkpoint; ``inrkit decode RUN --all`` renders them later);
    ``progress`` shows a progress bar; ``callbacks`` (:class:`inrkit.interfaces.Callback`
    instances) watch the fit beside the config's ``train.callbacks``; ``run_group`` names the
    experiment the fit belongs to, by which trackers (wandb, mlflow) group their runs.
    ``resume`` continues an interrupted run folder from its last snapshot (``resume.pt``, written
    every ``train.checkpoint_every`` steps and on Ctrl-C) with the run's own config; with the
    same seed on the CPU it ends exactly as an uninterrupted run would.
    Raises :class:`inrkit.errors.InrkitError` subclasses for anything the user can fix.
    """
    resume_state = None
    resume_dir = None
    if resume is not None:
        resume_dir = out = Path(resume)
        if config is not None or data is not None:
            raise ConfigError("--resume continues a run with its own config: give no other configuration")
        if (resume_dir / layout.METRICS_FILE).exists():
            raise ConfigError(f"{resume_dir} has finished (metrics.json exists); there is nothing to resume")
        if layout.is_failed_run(resume_dir) and not (resume_dir / layout.RESUME_FILE).is_file():
            failure = files.read_json(resume_dir / layout.FAILED_FILE)
            reason = failure.get("error") if isinstance(failure, dict) else None
            raise CheckpointError(
                f"nothing to resume: {resume_dir} is a failed run ({str(reason)[:200]}) without a snapshot; "
                f"a new run with --out {resume_dir} replaces it"
            )
        resume_state = checkpoint.load_resume(resume_dir / layout.RESUME_FILE)
        config_file = resume_dir / layout.CONFIG_FILE
        try:
            config = RunConfig.model_validate(files.read_json(config_file))
        except pydantic.ValidationError as exc:
            raise CheckpointError(f"{config_file}: invalid config: {format_validation_error(exc)}") from None
        check_untrusted_callbacks(config, str(config_file))
        config, moved = _on_this_machine(config)
        if moved and on_note is not None:
            on_note(moved)
    cfg = as_config(config, data=data_sources(data))
    cfg, notes = apply_demo_preset(cfg) if resume is None else (cfg, [])
    for note in notes:
        if on_note is not None:
            on_note(note)
    registry = registry or get_registry()
    with loading_progress(progress):
        prepared = prepare(cfg, registry)
    return fit_run(
        prepared, out=out, save=save, callbacks=_callbacks(registry, progress, callbacks), plots=plots, recon=recon,
        resume_dir=resume_dir, resume_state=resume_state, run_group=run_group,
    )


def encode(
    run: str | Path | Run,
    data: Sequence[str] | str,
    *,
    out: str | Path | None = None,
    train: Mapping[str, Any] | None = None,
    save: bool = True,
    progress: bool = False,
    registry: PluginRegistry | None = None,
    plots: bool = False,
    recon: bool = True,
    init: str = "random",
    callbacks: Sequence[Callback] = (),
    on_note: Callable[[str], None] | None = None,
) -> FitResult:
    """Encode new items into a trained run: fit only their per-item parameters.

    The run's shared tensors are loaded and frozen (left out of the optimiser, so not a single
    one changes); the new items get freshly initialised per-item layers, trained with the run's
    training settings updated by ``train`` (e.g. ``{"steps": 500, "lr": 1e-3}``). The new run
    folder's checkpoint contains the same shared tensors plus the new items' tensors.

    ``init="random"`` starts the new items' layers as a fresh fit would; ``"mean"`` starts them
    from the mean of the run's items' layers (they all feed the same shared layers, so they live
    in one basis). Without shared layers (``separate``) both mean a fresh start. ``plots`` and
    ``recon`` are :func:`fit`'s.
    """
    if init not in ("mean", "random"):
        raise ConfigError(f"init must be 'mean' or 'random' (got {init!r})")
    run = run if isinstance(run, Run) else load(run, registry)
    registry = registry or get_registry()
    sources = data_sources(data)
    if not sources:
        raise DataError("encode needs new items: give --data with files, folders or globs")
    check_untrusted_callbacks(run.config, str(run.checkpoint))
    config, moved = _on_this_machine(run.config)
    if moved and on_note is not None and "device" not in (train or {}):
        on_note(moved)
    base = config.model_dump(exclude_unset=False)
    channels = int(run.items[0]["channels"])
    update: dict[str, Any] = {"data": sources, "train": dict(train or {})}
    if "callbacks" in update["train"]:  # added to the run's own callbacks, as --log does for run
        own = list(base["train"].get("callbacks") or [])
        names = {c["name"] for c in own}
        new = [c for c in update["train"]["callbacks"] if (c if isinstance(c, str) else c.get("name")) not in names]
        update["train"]["callbacks"] = own + new
    if base["signal"].get("channels") == "auto":  # new items take the run's channel layout
        update["signal"] = {"channels": {1: "gray", 3: "rgb", 4: "rgba"}.get(channels, "auto")}
    with loading_progress(progress):
        prepared = prepare(as_config(merge(base, update)), registry, channels)
    model = prepared.model
    if count_parameters(model).per_item == 0:
        raise ConfigError(
            f"sharing {prepared.resolved.sharing.name!r} has no per-item parameters, so there is nothing to fit "
            "for a new item; encoding needs a strategy with per-item layers (minr, separate, coinpp)"
        )
    shared = checkpoint.read_shared_state(run.checkpoint)
    expected = {key: value for key, value in model.state_dict().items() if not key.startswith("items.")}
    check_state(expected, shared, str(run.checkpoint))
    model.load_state_dict(shared, strict=False)
    model.shared.requires_grad_(False)
    if init == "mean" and shared:
        means = checkpoint.read_item_means(run.checkpoint, len(run.items))
        with torch.no_grad():
            for key, param in model.items.named_parameters():
                if f"items.{key}" in means:
                    param.copy_(means[f"items.{key}"].expand_as(param))
    return fit_run(
        prepared, out=out, save=save, callbacks=_callbacks(registry, progress, callbacks), plots=plots, recon=recon,
        encoded_from=str(run.path),
    )


def decode(
    path: str | Path,
    item: str | int,
    *,
    size: Sequence[int] | None = None,
    scale: float | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Shortcut for ``load(path).decode(item, size=..., scale=..., max_pixels=...)``."""
    return load(path).decode(item, size=size, scale=scale, max_pixels=max_pixels)


def verify(path: str | Path, registry: PluginRegistry | None = None) -> dict[str, Any]:
    """Check a run folder (checksums, metadata, config, tensor shapes, its ``.inrz`` files) or an
    ``.inrz`` file (header, layout, section CRCs) without decoding it; see
    :func:`inrkit.runs.folder.verify`. Raises :class:`inrkit.errors.CheckpointError` on any problem."""
    return verify_run(path, registry)


__all__ = [
    "FitResult",
    "InrkitError",
    "Run",
    "Trainer",
    "as_config",
    "create_model",
    "decode",
    "encode",
    "fit",
    "load",
    "parameter_counts",
    "verify",
]
