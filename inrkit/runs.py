"""A run folder, written (:class:`RunFolder`) and read back (:class:`Run`).

The folder holds ``config.json`` (the run's full configuration), ``checkpoint.safetensors``
(weights and metadata, see :mod:`inrkit.artifacts`), ``metrics.json``
(:class:`~inrkit.results.RunMetrics`), ``recon/`` (each item's reconstruction), ``plots/`` and,
while a run is unfinished, ``resume.pt``. Writes are atomic and never overwrite a finished run;
the checkpoint and metrics are written before anything that may fail on a full disk or a bad
writer, so a late failure never costs the trained model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inrkit import artifacts
from inrkit.config import ResolvedRun, RunConfig
from inrkit.coords import grid
from inrkit.devices import resolve_device
from inrkit.errors import CheckpointError, ConfigError, DataError
from inrkit.factory import build_model, run_spec
from inrkit.interfaces import INRModel, Item, Signal
from inrkit.perf import matmul_precision
from inrkit.plugins import PluginRegistry, get_registry
from inrkit.points import auto_chunk_rows, render
from inrkit.results import RunMetrics


class RunFolder:
    """The writer of one run folder (rank 0 of a distributed run holds the only one)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, out: str | Path | None, label: str, config: RunConfig) -> RunFolder:
        """A new (or empty) folder with ``config.json``; an existing non-empty one is refused."""
        folder = cls(artifacts.new_run_folder(out, label))
        artifacts.write_json(folder.path / artifacts.CONFIG_FILE, config.model_dump(mode="json"))
        return folder

    @classmethod
    def reopen(cls, path: str | Path) -> RunFolder:
        """An unfinished run's folder, to continue writing into after ``--resume``."""
        return cls(Path(path))

    def save_snapshot(self, state: dict[str, Any]) -> Path:
        """A resumable training snapshot (``resume.pt``); returns its path."""
        path = self.path / artifacts.RESUME_FILE
        artifacts.save_resume(path, state)
        return path

    def write_results(
        self,
        model: INRModel,
        metadata: Mapping[str, Any],
        metrics: RunMetrics,
        signal: Signal,
        items: Sequence[Item],
        reconstructions: Sequence[np.ndarray],
        *,
        plots: bool = False,
        started: float | None = None,
    ) -> None:
        """Checkpoint, ``metrics.json``, figures and reconstructions, in that order.

        The snapshot is removed once the metrics are written: the run is finished. A figure that
        cannot be drawn is a warning; reconstructions that cannot be written are one
        :class:`~inrkit.errors.DataError` saying that the checkpoint and metrics are saved.
        ``started`` (a ``time.perf_counter()`` value) sets ``metrics.total_seconds``.
        """
        import time

        artifacts.save_checkpoint(self.path / artifacts.CHECKPOINT_FILE, model, metadata)
        if started is not None:
            metrics.total_seconds = time.perf_counter() - started
        artifacts.write_json(self.path / artifacts.METRICS_FILE, metrics.to_dict())
        (self.path / artifacts.RESUME_FILE).unlink(missing_ok=True)  # finished: the snapshot is obsolete
        targets = [signal.eval_view(item) for item in items]
        if plots:
            try:
                from inrkit.plots import write_run_plots

                write_run_plots(
                    self.path / "plots", metrics, [it.name for it in items], targets, reconstructions,
                    [signal.reference_views(it) for it in items],
                )
            except Exception as exc:  # noqa: BLE001 - a figure must never cost the run
                warnings.warn(f"could not draw the plots: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
        try:
            signal.save_all(items, reconstructions, self.path / artifacts.RECON_DIR)
        except Exception as exc:  # noqa: BLE001 - any writer failure becomes one message
            raise DataError(
                f"could not write the reconstructions into {self.path / artifacts.RECON_DIR}: "
                f"{type(exc).__name__}: {exc}. The checkpoint and metrics.json are saved; "
                f"'inrkit decode {self.path} --all -o DIR' renders the items again"
            ) from None


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
    def metrics(self) -> RunMetrics | None:
        """``metrics.json`` (``None`` while the run is unfinished)."""
        path = self.path / artifacts.METRICS_FILE
        return RunMetrics.from_dict(artifacts.read_json(path), str(path)) if path.is_file() else None

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

    def model(self, device: str | torch.device = "cpu") -> INRModel:
        """The whole trained model, every item's tensors included (to evaluate or fine-tune it in
        one's own code; :meth:`model_for` reads one item only)."""
        resolved = ResolvedRun(self.config, self._registry or get_registry())
        info = self.items[0]
        spec = run_spec(self.config, resolved.signal.in_dim, [it["shape"] for it in self.items], int(info["channels"]))
        model = build_model(resolved.activation, resolved.sharing, spec)
        try:
            model.load_state_dict(artifacts.read_state(self.checkpoint), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.checkpoint} does not match its own config: {exc}") from None
        return model.to(resolve_device(device) if str(device) != "cpu" else torch.device("cpu"))

    def model_for(self, item: str | int, device: str | torch.device = "cpu") -> INRModel:
        """A one-item model holding the shared tensors and this item's tensors only."""
        index = self.item_index(item)
        resolved = ResolvedRun(self.config, self._registry or get_registry())
        info = self.items[index]
        spec = run_spec(
            self.config, resolved.signal.in_dim, [info["shape"]], int(info["channels"]),
            item_indices=(index,), run_item_shapes=tuple(tuple(it["shape"]) for it in self.items),
        )
        model = build_model(resolved.activation, resolved.sharing, spec)
        state = artifacts.read_item_state(self.checkpoint, index)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.checkpoint} does not match its own config: {exc}") from None
        return model.to(resolve_device(device) if str(device) != "cpu" else torch.device("cpu"))

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
        coords = grid(shape, device=device).unsqueeze(0)
        with matmul_precision(device, self.config.train.tf32):  # as the run was trained and scored
            values = render(model, coords, auto_chunk_rows(device))
        return values[0].reshape(*shape, -1).cpu().numpy()


def load(path: str | Path, registry: PluginRegistry | None = None) -> Run:
    """Open a run folder written by :func:`inrkit.fit`."""
    return Run(path, registry)
