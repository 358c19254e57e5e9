"""The Python API: :func:`fit` a run, :func:`load` a run folder, decode an item at any size.

The CLI is a thin layer over these functions, so research code gets the same behaviour::

    import inrkit
    result = inrkit.fit({"sharing": {"name": "minr"}, "data": ["photos/"]}, out="runs/demo")
    run = inrkit.load("runs/demo")
    image = run.decode("kodim01", scale=2)   # (H*2, W*2, 3) float32 in [0, 1]
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inrkit import artifacts, distributed
from inrkit.config import ResolvedRun, RunConfig, merge, validate_run_config
from inrkit.coords import grid_coords
from inrkit.errors import CheckpointError, ConfigError, DataError, InrkitError, PluginError
from inrkit.interfaces import Item, ModelSpec
from inrkit.metrics import mean_std, psnr, ssim
from inrkit.nn import MultiINR, ParamCounts, count_parameters
from inrkit.plugins import PluginRegistry, get_registry
from inrkit.train import PointSet, Trainer, auto_chunk_rows, render, render_points, resolve_device


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns: the metrics, the trained model and where the run was saved."""

    config: RunConfig
    metrics: dict[str, Any]
    model: MultiINR
    items: list[Item]
    reconstructions: list[np.ndarray]
    run_dir: Path | None
    #: False on the other ranks of a distributed run: they hold the model but no metrics.
    is_main: bool = True


def as_config(config: RunConfig | Mapping[str, Any] | None = None, **sections: Any) -> RunConfig:
    """A validated :class:`RunConfig` from a config object or a (partial) dict plus overrides."""
    # Values the user did not set stay unset (pydantic's ``model_fields_set``), so presets such
    # as the sample demo's step count can tell a default from an explicit choice.
    data = config.model_dump(exclude_unset=True) if isinstance(config, RunConfig) else dict(config or {})
    data = merge(data, {k: v for k, v in sections.items() if v is not None})
    return validate_run_config(data)


#: Steps of the no-data demo (four built-in samples) unless the user sets ``train.steps``:
#: keeps ``inrkit run`` with no arguments under two minutes on a 2-core CPU.
DEMO_STEPS = 100


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


def build_model(
    resolved: ResolvedRun, item_shapes: Sequence[tuple[int, ...]], channels: int, **spec_extra: Any
) -> MultiINR:
    """Ask the sharing strategy for a model; validate it follows the ``shared``/``items`` layout."""
    cfg = resolved.config
    spec = ModelSpec(
        in_dim=resolved.signal.in_dim,
        out_dim=channels,
        width=cfg.model.width,
        layers=cfg.model.layers,
        item_shapes=tuple(tuple(s) for s in item_shapes),
        **spec_extra,
    )
    model = resolved.sharing.build(resolved.activation, spec)
    if not isinstance(model, MultiINR):
        raise PluginError(
            f"sharing strategy {resolved.sharing.name!r} returned {type(model).__name__}, not an inrkit.nn.MultiINR"
        )
    return model


def parameter_counts(
    config: RunConfig | Mapping[str, Any] | None = None,
    *,
    n_items: int,
    item_shape: tuple[int, ...] = (64, 64),
    channels: int = 3,
    registry: PluginRegistry | None = None,
) -> ParamCounts:
    """Exact parameter counts for ``n_items`` items, without allocating or training the model."""
    if n_items <= 0:
        raise ConfigError(f"the number of items must be positive (got {n_items})")
    resolved = ResolvedRun(as_config(config), registry)
    with torch.device("meta"):
        model = build_model(resolved, [item_shape] * n_items, channels)
    return count_parameters(model)


def _check_items(items: list[Item], signal_name: str) -> None:
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


def _plugin_info(resolved: ResolvedRun, registry: PluginRegistry) -> dict[str, Any]:
    info = {}
    for kind in ("activation", "sharing", "signal"):
        entry = registry.entry(kind, getattr(resolved, kind).name)
        info[kind] = {
            "name": entry.name,
            "plugin": entry.plugin,
            "distribution": entry.distribution,
            "version": entry.version,
        }
    return info


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def fit(
    config: RunConfig | Mapping[str, Any] | None = None,
    *,
    data: Sequence[str] | None = None,
    out: str | Path | None = None,
    save: bool = True,
    progress: bool = False,
    registry: PluginRegistry | None = None,
    on_note: Callable[[str], None] | None = None,
    plots: bool = False,
    resume: str | Path | None = None,
) -> FitResult:
    """Fit a run: load the signal's items, build the shared model, train, evaluate, save.

    ``config`` is a :class:`RunConfig` or a (partial) dict of one; ``data`` replaces its
    ``data``. With ``save`` the run folder ``out`` (default ``runs/<time>-<activation>-<sharing>``)
    receives ``config.json``, ``metrics.json``, ``recon/`` and ``checkpoint.safetensors``.
    ``on_note`` receives informational messages (e.g. that the demo schedule is in use);
    ``plots`` draws training curves and reconstruction figures into ``<run>/plots/``.
    ``resume`` continues an interrupted run folder from its last snapshot (``resume.pt``, written
    every ``train.checkpoint_every`` steps and on Ctrl-C) with the run's own config; with the
    same seed on the CPU it ends exactly as an uninterrupted run would.
    Raises :class:`inrkit.errors.InrkitError` subclasses for anything the user can fix.
    """
    resume_state = None
    if resume is not None:
        out = Path(resume)
        if config is not None or data is not None:
            raise ConfigError("--resume continues a run with its own config: give no other configuration")
        if (out / artifacts.METRICS_FILE).exists():
            raise ConfigError(f"{out} has finished (metrics.json exists); there is nothing to resume")
        resume_state = artifacts.load_resume(out / artifacts.RESUME_FILE)
        config = RunConfig.model_validate(artifacts.read_json(out / artifacts.CONFIG_FILE))
    if isinstance(data, (str, Path)):
        data = [str(data)]
    cfg = as_config(config, data=list(data) if data is not None else None)
    cfg, notes = apply_demo_preset(cfg) if resume is None else (cfg, [])
    for note in notes:
        if on_note is not None:
            on_note(note)
    registry = registry or get_registry()
    resolved, device, items, model = _prepare(cfg, registry)
    return _train_and_save(
        resolved, registry, items, model, device, out=out, save=save, progress=progress, plots=plots,
        resume_state=resume_state,
    )


def _prepare(
    cfg: RunConfig, registry: PluginRegistry, channels: int | None = None
) -> tuple[ResolvedRun, torch.device, list[Item], MultiINR]:
    """Plugins, device, items and a freshly seeded model (on the CPU) for a config."""
    resolved = ResolvedRun(cfg, registry)
    resolved.config = resolved.normalized_config()
    device = resolve_device(resolved.config.train.device)
    items = resolved.signal.load(resolved.config.data)
    _check_items(items, resolved.signal.name)
    if channels is not None and items[0].channels != channels:
        raise DataError(f"the new items have {items[0].channels} channel(s), the run's items {channels}")
    torch.manual_seed(resolved.config.train.seed)
    model = build_model(resolved, [resolved.signal.train_view(it).shape[:-1] for it in items], items[0].channels)
    return resolved, device, items, model


def _train_and_save(
    resolved: ResolvedRun,
    registry: PluginRegistry,
    items: list[Item],
    model: MultiINR,
    device: torch.device,
    *,
    out: str | Path | None,
    save: bool,
    progress: bool,
    plots: bool = False,
    extra_metadata: Mapping[str, Any] | None = None,
    resume_state: dict[str, Any] | None = None,
) -> FitResult:
    """Train the model's trainable parameters on the items, evaluate, write the run folder.

    ``model`` may be on the CPU: it moves to the device once the process's device is known.
    Under torchrun with several processes the items are split across them
    (:mod:`inrkit.distributed`); rank 0 evaluates and writes, the other ranks return the trained
    model with empty metrics (``FitResult.is_main`` is false there).
    """
    dist_ctx, device = distributed.setup(device)
    return _train_and_save_on(
        resolved, registry, items, model.to(device), device, dist_ctx, out=out, save=save, progress=progress,
        plots=plots, extra_metadata=extra_metadata, resume_state=resume_state,
    )


def _train_and_save_on(
    resolved: ResolvedRun,
    registry: PluginRegistry,
    items: list[Item],
    model: MultiINR,
    device: torch.device,
    dist_ctx: distributed.DistContext | None,
    *,
    out: str | Path | None,
    save: bool,
    progress: bool,
    plots: bool,
    extra_metadata: Mapping[str, Any] | None,
    resume_state: dict[str, Any] | None,
) -> FitResult:
    from inrkit import __version__

    cfg = resolved.config
    is_main = dist_ctx is None or dist_ctx.is_main
    signal = resolved.signal
    train_arrays = [signal.train_view(item) for item in items]
    channels = items[0].channels
    counts = count_parameters(model)
    lr = cfg.train.lr if cfg.train.lr is not None else resolved.activation.default_lr

    if dist_ctx is not None:  # refuse before anything is written
        distributed.check_model(model, resolved.sharing.name)
        own = dist_ctx.items_of(len(items))
    run_dir = None
    if resume_state is not None:
        run_dir = Path(out)  # type: ignore[arg-type]
    elif save:

        def create() -> Path:
            folder = artifacts.new_run_folder(out, f"{resolved.activation.name}-{resolved.sharing.name}")
            artifacts.write_json(folder / artifacts.CONFIG_FILE, cfg.model_dump(mode="json"))
            return folder

        # Rank 0 creates it; a refusal there stops every rank with the same message.
        run_dir = distributed.on_main(create, device)
    if not is_main:
        run_dir = None  # only rank 0 writes

    def snapshot(state: dict[str, Any]) -> None:
        if run_dir is not None:
            artifacts.save_resume(run_dir / artifacts.RESUME_FILE, state)

    if dist_ctx is None:
        points = PointSet.from_arrays(train_arrays)
    else:
        points = PointSet.from_arrays([train_arrays[i] for i in own], item_ids=own, loss_items=len(items))
    trainer = Trainer(cfg.train, lr=lr, device=device, progress=progress)
    started = time.perf_counter()
    result = trainer.fit(model, points, resume_state=resume_state, on_checkpoint=snapshot, dist=dist_ctx)
    del points

    def finish() -> FitResult:
        """Evaluate and write (rank 0 of a distributed run)."""
        eval_arrays = [signal.eval_view(item) for item in items]
        eval_points = PointSet.from_arrays(eval_arrays)
        rendered = render_points(model, eval_points.to(device), auto_chunk_rows(device)).cpu()
        recons = [rendered[i, : eval_points.counts[i]].reshape(arr.shape).numpy() for i, arr in enumerate(eval_arrays)]
        per_item = []
        for item, recon, target in zip(items, recons, eval_arrays, strict=True):
            per_item.append(
                {
                    "name": item.name,
                    "shape": list(target.shape[:-1]),
                    "channels": int(target.shape[-1]),
                    "psnr": _finite(psnr(recon, target)),
                    "ssim": ssim(recon, target),
                    **signal.extra_metrics(item),
                }
            )
        metrics: dict[str, Any] = {}
        for key in [k for k in per_item[0] if k not in ("name", "shape", "channels")]:
            metrics[f"{key}_mean"], metrics[f"{key}_std"] = mean_std([r.get(key) for r in per_item])
        metrics.update(
            {
                "params": counts.as_dict(),
                "items": per_item,
                "steps": result.steps,
                "seconds": result.seconds,
                "total_seconds": None,
                "lr": lr,
                "device": str(device),
                "processes": 1 if dist_ctx is None else dist_ctx.world_size,
                "activation": resolved.activation.name,
                "sharing": resolved.sharing.name,
                "signal": signal.name,
                "inrkit_version": __version__,
                "history": result.history,
            }
        )
        if extra_metadata:
            metrics.update(extra_metadata)

        if run_dir is not None:
            metadata = {
                "config": cfg.model_dump(mode="json"),
                "plugins": _plugin_info(resolved, registry),
                "items": [
                    {"name": it.name, "shape": list(a.shape[:-1]), "eval_shape": list(e.shape[:-1]), "channels": channels}
                    for it, a, e in zip(items, train_arrays, eval_arrays, strict=True)
                ],
                "params": counts.as_dict(),
                "inrkit_version": __version__,
                **(extra_metadata or {}),
            }
            # The checkpoint and metrics first: a failure writing reconstructions must not lose them.
            artifacts.save_checkpoint(run_dir / artifacts.CHECKPOINT_FILE, model, metadata)
            metrics["total_seconds"] = time.perf_counter() - started
            artifacts.write_json(run_dir / artifacts.METRICS_FILE, metrics)
            (run_dir / artifacts.RESUME_FILE).unlink(missing_ok=True)  # finished: the snapshot is obsolete
            if plots:
                try:
                    from inrkit.plots import write_run_plots

                    write_run_plots(
                        run_dir / "plots", metrics, [it.name for it in items], eval_arrays, recons,
                        [signal.reference_views(it) for it in items],
                    )
                except Exception as exc:  # noqa: BLE001 - a figure must never cost the run
                    warnings.warn(f"could not draw the plots: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
            try:
                signal.save_all(items, recons, run_dir / artifacts.RECON_DIR)
            except Exception as exc:  # noqa: BLE001 - any writer failure becomes one message
                raise DataError(
                    f"could not write the reconstructions into {run_dir / artifacts.RECON_DIR}: "
                    f"{type(exc).__name__}: {exc}. The checkpoint and metrics.json are saved; "
                    f"'inrkit decode {run_dir} --all -o DIR' renders the items again"
                ) from None
        else:
            metrics["total_seconds"] = time.perf_counter() - started
        return FitResult(cfg, metrics, model, items, recons, run_dir)

    if dist_ctx is None:
        return finish()
    # Rank 0 finishes while the others wait; an error there stops every rank with its message,
    # and all ranks leave together.
    done: list[FitResult] = []
    distributed.on_main(lambda: done.append(finish()), device)
    return done[0] if done else FitResult(cfg, {}, model, items, [], None, is_main=False)


def encode(
    run: str | Path | Run,
    data: Sequence[str],
    *,
    out: str | Path | None = None,
    train: Mapping[str, Any] | None = None,
    save: bool = True,
    progress: bool = False,
    registry: PluginRegistry | None = None,
    plots: bool = False,
    init: str = "random",
) -> FitResult:
    """Encode new items into a trained run: fit only their per-item parameters.

    The run's shared tensors are loaded and frozen (left out of the optimiser, so not a single
    one changes); the new items get freshly initialised per-item layers, trained with the run's
    training settings updated by ``train`` (e.g. ``{"steps": 500, "lr": 1e-3}``). The new run
    folder's checkpoint contains the same shared tensors plus the new items' tensors.

    ``init="random"`` starts the new items' layers as a fresh fit would; ``"mean"`` starts them
    from the mean of the run's items' layers (they all feed the same shared layers, so they live
    in one basis). Without shared layers (``separate``) both mean a fresh start.
    """
    if init not in ("mean", "random"):
        raise ConfigError(f"init must be 'mean' or 'random' (got {init!r})")
    run = run if isinstance(run, Run) else load(run, registry)
    registry = registry or get_registry()
    if isinstance(data, (str, Path)):
        data = [str(data)]
    if not data:
        raise DataError("encode needs new items: give --data with files, folders or globs")
    base = run.config.model_dump(exclude_unset=False)
    channels = int(run.items[0]["channels"])
    update: dict[str, Any] = {"data": list(data), "train": dict(train or {})}
    if base["signal"].get("channels") == "auto":  # new items take the run's channel layout
        update["signal"] = {"channels": {1: "gray", 3: "rgb", 4: "rgba"}.get(channels, "auto")}
    resolved, device, items, model = _prepare(as_config(merge(base, update)), registry, channels)
    if count_parameters(model).per_item == 0:
        raise ConfigError(
            f"sharing {resolved.sharing.name!r} has no per-item parameters, so there is nothing to fit for a "
            "new item; encoding needs a strategy with per-item layers (minr, separate, coinpp)"
        )
    shared = artifacts.read_shared_state(run.checkpoint)
    missing, unexpected = model.load_state_dict(shared, strict=False)
    if unexpected or any(not key.startswith("items.") for key in missing):
        raise CheckpointError(f"{run.checkpoint}: shared tensors do not match the run's own config")
    model.shared.requires_grad_(False)
    if init == "mean" and shared:
        means = artifacts.read_item_means(run.checkpoint, len(run.items))
        with torch.no_grad():
            for key, param in model.items.named_parameters():
                if f"items.{key}" in means:
                    param.copy_(means[f"items.{key}"].expand_as(param))
    return _train_and_save(
        resolved,
        registry,
        items,
        model,
        device,
        out=out,
        save=save,
        progress=progress,
        plots=plots,
        extra_metadata={"encoded_from": str(run.path)},
    )


class Run:
    """A finished run folder: its config, metrics and checkpoint, decoded one item at a time."""

    def __init__(self, path: str | Path, registry: PluginRegistry | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise CheckpointError(f"run folder not found: {self.path}")
        self.checkpoint = self.path / artifacts.CHECKPOINT_FILE
        self.metadata = artifacts.read_metadata(self.checkpoint)
        try:
            self.config = RunConfig.model_validate(self.metadata["config"])
            self.items: list[dict[str, Any]] = list(self.metadata["items"])
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{self.checkpoint}: metadata is incomplete or invalid: {exc}") from None
        self._registry = registry

    @property
    def item_names(self) -> list[str]:
        return [it["name"] for it in self.items]

    @property
    def metrics(self) -> dict[str, Any] | None:
        path = self.path / artifacts.METRICS_FILE
        return artifacts.read_json(path) if path.is_file() else None

    def item_index(self, item: str | int) -> int:
        """Index of an item given by name or index (a numeric string counts as an index)."""
        if isinstance(item, str) and item in self.item_names:
            return self.item_names.index(item)
        try:
            index = int(item)
        except (TypeError, ValueError):
            index = -1
        if 0 <= index < len(self.items):
            return index
        shown = ", ".join(self.item_names[:10]) + (" ..." if len(self.items) > 10 else "")
        raise DataError(f"item {item!r} is not in run {self.path}; items are 0..{len(self.items) - 1}: {shown}")

    def model_for(self, item: str | int, device: str | torch.device = "cpu") -> MultiINR:
        """A one-item model holding the shared tensors and this item's tensors only."""
        index = self.item_index(item)
        resolved = ResolvedRun(self.config, self._registry or get_registry())
        info = self.items[index]
        model = build_model(
            resolved,
            [tuple(info["shape"])],
            int(info["channels"]),
            item_indices=(index,),
            run_item_shapes=tuple(tuple(it["shape"]) for it in self.items),
        )
        state = artifacts.read_item_state(self.checkpoint, index)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.checkpoint} does not match its own config: {exc}") from None
        return model.to(resolve_device(str(device)) if str(device) != "cpu" else torch.device("cpu"))

    def output_shape(self, item: str | int, *, size: Sequence[int] | None = None, scale: float | None = None) -> tuple[int, ...]:
        info = self.items[self.item_index(item)]
        base = tuple(int(s) for s in info.get("eval_shape", info["shape"]))
        if size is not None and scale is not None:
            raise ConfigError("give a size or a scale, not both")
        if size is not None:
            shape = tuple(int(s) for s in size)
            if len(shape) != len(base) or any(s <= 0 for s in shape):
                raise ConfigError(f"size must be {len(base)} positive numbers (got {tuple(size)})")
            return shape
        if scale is not None:
            if not (scale > 0 and math.isfinite(scale)):
                raise ConfigError(f"scale must be a positive number (got {scale})")
            return tuple(max(1, round(s * scale)) for s in base)
        return base

    def decode(
        self,
        item: str | int,
        *,
        size: Sequence[int] | None = None,
        scale: float | None = None,
        device: str | torch.device = "cpu",
    ) -> np.ndarray:
        """Render one item at its own size, a ``scale`` of it, or an explicit spatial ``size``.

        Returns ``(*size, channels)`` float32 in [0, 1]; points are rendered in chunks, so large
        sizes need little memory beyond the output itself.
        """
        shape = self.output_shape(item, size=size, scale=scale)
        model = self.model_for(item, device)
        device = next(model.parameters()).device
        coords = grid_coords(shape, device=device).unsqueeze(0)
        values = render(model, coords, auto_chunk_rows(device))
        return values[0].reshape(*shape, -1).cpu().numpy()


def load(path: str | Path, registry: PluginRegistry | None = None) -> Run:
    """Open a run folder written by :func:`fit`."""
    return Run(path, registry)


def decode(
    path: str | Path, item: str | int, *, size: Sequence[int] | None = None, scale: float | None = None
) -> np.ndarray:
    """Shortcut for ``load(path).decode(item, size=..., scale=...)``."""
    return load(path).decode(item, size=size, scale=scale)


__all__ = [
    "FitResult",
    "encode",
    "InrkitError",
    "Run",
    "as_config",
    "decode",
    "fit",
    "load",
    "parameter_counts",
]
