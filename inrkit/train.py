"""The generic trainer: many items, one optimiser, full-image steps in chunks.

Each step sees every point of every item once. Points are processed in chunks (same point range
of every item at a time) and gradients accumulate, which gives exactly the full-batch gradient
while keeping activations cache-sized on the CPU (a 128x128 SIREN step: 917 ms full batch vs
180 ms in chunks of 2048 points, see the benchmarks). The loss is each item's mean squared error,
averaged over items, so items of different sizes weigh the same (shorter items are padded with
points of weight zero).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import einops
import numpy as np
import torch

from inrkit.config import TrainConfig
from inrkit.coords import grid_coords, to_signed, to_unit
from inrkit.distributed import DistContext, gather_item_rows, reduce_gradients
from inrkit.errors import ConfigError, TrainingError, TrainingInterrupted
from inrkit.metrics import psnr_from_mse
from inrkit.nn import MultiINR
from inrkit.perf import autocast_dtype, compile_errors, compile_model, matmul_precision

#: Rows (points x items) per chunk on the CPU: keeps a width-256 layer's activations in cache.
CPU_CHUNK_ROWS = 8192
#: Rows per chunk on a GPU: large enough to fill it, small enough for a few GB of activations.
GPU_CHUNK_ROWS = 1 << 18


def resolve_device(name: str) -> torch.device:
    """``auto`` means CUDA when present; an unavailable device is a configuration error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device: {name!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"train.device: {name!r} does not exist ({torch.cuda.device_count()} GPU(s))")
    elif device.type != "cpu":
        raise ConfigError(f"train.device: {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


class PointSet:
    """All items' targets, padded to a common point count; coordinates are made per chunk.

    Only the targets are stored. A chunk's coordinates are computed from the point indices and
    each item's grid shape when the chunk is used (one shared grid when all items have the same
    shape), and padding is a mask from each item's point count, so memory grows with the data
    and never with a per-point copy of coordinates or weights.

    In distributed training a rank holds some of the run's items: ``item_ids`` gives the
    model's index of each row (``None``: row ``i`` is item ``i``) and ``loss_items`` the number of
    items the loss averages over (all ranks' items).
    """

    def __init__(
        self,
        targets: torch.Tensor,
        shapes: Sequence[Sequence[int]],
        item_ids: torch.Tensor | None = None,
        loss_items: int | None = None,
    ) -> None:
        self.targets = targets  # (N, P, C) in [-1, 1]
        self.shapes = tuple(tuple(int(n) for n in s) for s in shapes)
        self.counts = [math.prod(s) for s in self.shapes]
        self.item_ids = item_ids
        self.loss_items = loss_items or len(self.shapes)
        device = targets.device
        self._counts = torch.tensor(self.counts, device=device)
        self._dims = torch.tensor(self.shapes, device=device)
        # Items of one shape (the common case) share one grid: (P, in_dim), not (N, P, in_dim).
        self._grid = grid_coords(self.shapes[0], device=device) if len(set(self.shapes)) == 1 else None

    @property
    def n_items(self) -> int:
        return self.targets.shape[0]

    @property
    def points(self) -> int:
        return self.targets.shape[1]

    @functools.cached_property
    def padded(self) -> bool:
        """Whether some item is shorter than the longest (read in every chunk, so computed once)."""
        return any(c != self.points for c in self.counts)

    def model_items(self, items: torch.Tensor | None) -> torch.Tensor | None:
        """The model's item indices for rows ``items`` of this set (as :meth:`chunks` yields them)."""
        if self.item_ids is None:
            return items
        return self.item_ids if items is None else self.item_ids.index_select(0, items)

    def chunk_coords(self, sl: slice, items: torch.Tensor | None = None) -> torch.Tensor:
        """Coordinates ``(rows, points, in_dim)`` of a chunk, for all rows or the listed ones.

        Equal to :func:`~inrkit.coords.grid_coords` of each item's shape, sliced; points past an
        item's end get coordinates too (their loss weight is zero).
        """
        rows = self.n_items if items is None else items.shape[0]
        if self._grid is not None:
            return self._grid[sl].expand(rows, -1, -1)
        dims = self._dims if items is None else self._dims.index_select(0, items)  # (rows, d)
        index = torch.arange(sl.start, sl.stop, device=dims.device).expand(rows, -1)
        axes = []
        for axis in range(dims.shape[1] - 1, -1, -1):  # row-major: the last axis varies fastest
            n = dims[:, axis : axis + 1]
            axes.append((2.0 * (index % n).float() + 1.0) / n - 1.0)
            index = index // n
        return torch.stack(axes[::-1], dim=-1)

    def chunk_targets(self, sl: slice, items: torch.Tensor | None = None) -> torch.Tensor:
        return self.targets[:, sl] if items is None else self.targets[:, sl].index_select(0, items)

    def item_losses(self, pred: torch.Tensor, sl: slice, items: torch.Tensor | None = None) -> torch.Tensor:
        """Each row's share of this chunk in the loss: ``(rows,)``, summing to :meth:`loss`.

        Summed over all chunks, row ``i`` gives item ``i``'s mean squared error divided by the
        number of items. ``items`` restricts the chunk to some rows (``pred`` then has one row
        per listed item).
        """
        sq = (pred - self.chunk_targets(sl, items)).square()
        scale = self.targets.shape[-1] * self.loss_items
        if not self.padded:
            return sq.sum(dim=(1, 2)) / (self.points * scale)
        counts = self._counts if items is None else self._counts.index_select(0, items)
        inside = torch.arange(sl.start, sl.start + sq.shape[1], device=counts.device) < counts.unsqueeze(1)
        return (sq.sum(dim=2) * inside).sum(dim=1) / (counts * scale)

    def loss(self, pred: torch.Tensor, sl: slice, items: torch.Tensor | None = None) -> torch.Tensor:
        """This chunk's share of the mean over items of each item's mean squared error."""
        return self.item_losses(pred, sl, items).sum()

    def chunks(self, chunk: int) -> list[tuple[slice, torch.Tensor | None]]:
        """Point ranges of ``chunk`` points, each with the rows that still have points there.

        Items of different sizes are padded to the largest; a chunk past an item's last point
        leaves that item out instead of computing its padding, and grows so that it keeps
        ``chunk x N`` rows (points x items): with many items of very different sizes, the
        largest item's tail is not cut into thousands of tiny chunks. Consecutive chunks with the same
        rows share one index tensor (the model selects those rows' layers once for the run).
        """
        out: list[tuple[slice, torch.Tensor | None]] = []
        items: torch.Tensor | None = None
        previous: list[int] | None = None
        rows = chunk * self.n_items
        start = 0
        while start < self.points:
            active = [i for i, c in enumerate(self.counts) if c > start]
            if active != previous:  # consecutive chunks with the same rows share one index tensor
                items = None if len(active) == self.n_items else torch.tensor(active, device=self.targets.device)
                previous = active
            stop = min(start + max(chunk, rows // len(active)), self.points)
            out.append((slice(start, stop), items))
            start = stop
        return out

    def to(self, device: torch.device) -> PointSet:
        ids = None if self.item_ids is None else self.item_ids.to(device)
        return PointSet(self.targets.to(device), self.shapes, ids, self.loss_items)

    @classmethod
    def from_arrays(
        cls, arrays: Sequence[np.ndarray], item_ids: Sequence[int] | None = None, loss_items: int | None = None
    ) -> PointSet:
        """Arrays ``(*spatial, C)`` in [0, 1] to padded targets in [-1, 1]."""
        counts = [int(np.prod(a.shape[:-1])) for a in arrays]
        targets = torch.zeros(len(arrays), max(counts), arrays[0].shape[-1])
        for i, arr in enumerate(arrays):
            targets[i, : counts[i]] = einops.rearrange(to_signed(arr), "... c -> (...) c")
        ids = None if item_ids is None else torch.tensor(list(item_ids), dtype=torch.long)
        return cls(targets, [a.shape[:-1] for a in arrays], ids, loss_items)


def auto_chunk_rows(device: torch.device) -> int:
    """Rows (points x items) per chunk for a device."""
    return GPU_CHUNK_ROWS if device.type == "cuda" else CPU_CHUNK_ROWS


def auto_chunk_points(n_items: int, points: int, device: torch.device) -> int:
    return max(1, min(points, auto_chunk_rows(device) // max(n_items, 1)))


@dataclasses.dataclass
class TrainResult:
    steps: int
    seconds: float
    final_loss: float
    history: list[dict[str, float]]


class Trainer:
    """Adam with ``lr * ratio ** (t / T)`` decay, chunked full-image steps, live progress."""

    def __init__(self, config: TrainConfig, lr: float, device: torch.device, progress: bool = True) -> None:
        self.config = config
        self.lr = lr
        self.device = device
        self.progress = progress

    def chunk_points(self, points: PointSet) -> int:
        if self.config.chunk_points == "auto":
            return auto_chunk_points(points.n_items, points.points, self.device)
        return min(int(self.config.chunk_points), points.points)

    def fit(
        self,
        model: MultiINR,
        points: PointSet,
        resume_state: dict[str, Any] | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
        dist: DistContext | None = None,
    ) -> TrainResult:
        """Train; ``resume_state`` (a snapshot passed to ``on_checkpoint`` earlier) continues a run.

        ``on_checkpoint`` receives a snapshot (model, optimiser and schedule state, history)
        every ``checkpoint_every`` steps and when Ctrl-C interrupts training, which then raises
        :class:`~inrkit.errors.TrainingInterrupted`. With ``dist`` (see :mod:`inrkit.distributed`)
        ``points`` holds this rank's items; shared gradients are summed over ranks each step and
        every rank ends holding the whole trained model.
        """
        cfg = self.config
        with matmul_precision(self.device, cfg.tf32):
            return self._fit(model, points.to(self.device), resume_state, on_checkpoint, dist)

    def _fit(
        self,
        model: MultiINR,
        points: PointSet,
        resume_state: dict[str, Any] | None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None,
        dist: DistContext | None,
    ) -> TrainResult:
        cfg = self.config
        if cfg.precision != "fp32" and not _plain_forward(model):
            raise ConfigError(
                f"train.precision={cfg.precision!r}: {type(model).__name__} runs its own forward pass or "
                "optimisation loop, which does not keep its first and last layers in float32; use fp32"
            )
        steps = cfg.steps
        chunk = self.chunk_points(points)
        chunks = points.chunks(chunk)
        params = [p for p in model.parameters() if p.requires_grad]
        shared = [p for p in model.shared.parameters() if p.requires_grad]
        if not params:  # everything frozen (encoding into COIN++ fits its latents afterwards)
            steps = 0
        optimizer = torch.optim.Adam(params or [torch.zeros(1, requires_grad=True)], lr=self.lr)
        ratio = cfg.lr_final_ratio
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: ratio ** (min(t, steps) / max(steps, 1)))
        log_every = cfg.log_every or max(1, steps // 100)
        # Reading the loss makes the host wait for the device: on a GPU only at log steps.
        check_every = 1 if self.device.type == "cpu" else log_every
        history: list[dict[str, Any]] = []
        first_step, seconds_before = 1, 0.0
        if resume_state is not None:
            model.load_state_dict(resume_state["model"])
            optimizer.load_state_dict(resume_state["optimizer"])
            scheduler.load_state_dict(resume_state["scheduler"])
            history = list(resume_state["history"])
            first_step = int(resume_state["step"]) + 1
            seconds_before = float(resume_state["seconds"])
        own = None
        if dist is not None:
            own = points.item_ids if points.item_ids is not None else torch.arange(points.n_items, device=self.device)
        bar = _progress_bar(steps, self.progress and (dist is None or dist.is_main))
        bar.update(first_step - 1)
        model.train()
        start = time.perf_counter()
        loss_value = math.nan
        completed = first_step - 1

        def snapshot() -> dict[str, Any]:
            if dist is not None:
                gather_item_rows(model, optimizer, own)
            return {
                "step": completed,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "history": history,
                "seconds": seconds_before + time.perf_counter() - start,
            }

        try:
            model.autocast_dtype = autocast_dtype(cfg.precision)
            if cfg.compile and steps:
                compile_model(model)
            for step in range(first_step, steps + 1):
                optimizer.zero_grad(set_to_none=True)
                with compile_errors(cfg.compile and step == first_step):
                    per_item = model.accumulate_gradients(points, chunks)
                if dist is not None:
                    per_item = reduce_gradients(shared, per_item, own, points.loss_items)
                total = per_item.sum()
                if step % check_every == 0 or step == steps or step % log_every == 0:
                    loss_value = float(total)
                    if not math.isfinite(loss_value):
                        raise TrainingError(
                            f"the loss became {loss_value} at step {step} of {steps}; training diverged. "
                            f"Lower the learning rate (--lr, it was {self.lr:g})."
                        )
                    if step % log_every == 0 or step == steps:
                        # Item i's share is its MSE / N on [-1, 1] targets: x N / 4 is its [0, 1] MSE.
                        item_mse = (per_item * points.loss_items / 4.0).tolist()
                        record = {
                            "step": step,
                            "loss": loss_value,
                            "psnr": psnr_from_mse(loss_value / 4.0),
                            "item_psnr": [psnr_from_mse(m) for m in item_mse],
                        }
                        history.append(record)
                        bar.set_postfix(loss=f"{loss_value:.2e}", psnr=f"{record['psnr']:.2f}dB", refresh=False)
                optimizer.step()
                scheduler.step()
                completed = step
                bar.update(1)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < steps:
                    # Distributed: every rank gathers (a collective) even where nothing is saved.
                    if on_checkpoint is not None:
                        on_checkpoint(snapshot())
                    elif dist is not None:
                        snapshot()
        except KeyboardInterrupt:
            # Other processes may be inside a collective: a distributed run keeps its periodic snapshots.
            if on_checkpoint is None or dist is not None:
                raise TrainingInterrupted(f"interrupted at step {completed} of {steps}") from None
            on_checkpoint(snapshot())
            raise TrainingInterrupted(
                f"interrupted after step {completed} of {steps}; a snapshot was saved, continue with --resume"
            ) from None
        finally:
            bar.close()
            model.autocast_dtype = None
            model.compiled_forward = None
        if dist is not None:
            gather_item_rows(model, optimizer, own)
        model.after_training(points, chunks)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = seconds_before + time.perf_counter() - start
        return TrainResult(steps=steps, seconds=seconds, final_loss=loss_value, history=history)


def _plain_forward(model: MultiINR) -> bool:
    """Whether ``model`` uses MultiINR's own forward and training loop (where bf16 is scoped)."""
    own = type(model)
    return own.forward is MultiINR.forward and own.accumulate_gradients is MultiINR.accumulate_gradients


@torch.no_grad()
def render_points(model: torch.nn.Module, points: PointSet, chunk_rows: int = CPU_CHUNK_ROWS) -> torch.Tensor:
    """Evaluate ``model`` at every point of ``points``: ``(N, P, C)`` in [0, 1], padding left at 0."""
    model.eval()
    out = torch.zeros(points.n_items, points.points, points.targets.shape[-1], device=points.targets.device)
    for sl, items in points.chunks(max(1, chunk_rows // max(points.n_items, 1))):
        pred = model(points.chunk_coords(sl, items), points.model_items(items))
        if items is None:
            out[:, sl] = pred
        else:
            out[items, sl] = pred
    return to_unit(out)


@torch.no_grad()
def render(model: torch.nn.Module, coords: torch.Tensor, chunk_rows: int = CPU_CHUNK_ROWS) -> torch.Tensor:
    """Evaluate ``model`` on ``(N, P, in_dim)`` coordinates in chunks; values in [0, 1]."""
    model.eval()
    n, p, _ = coords.shape
    chunk = max(1, chunk_rows // max(n, 1))
    outs = [model(coords[:, s : s + chunk]) for s in range(0, p, chunk)]
    return to_unit(torch.cat(outs, dim=1))


def _progress_bar(total: int, enabled: bool):  # type: ignore[no-untyped-def]
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc="fitting", unit="step", leave=False, dynamic_ncols=True)
