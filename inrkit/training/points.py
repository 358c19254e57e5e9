"""All items' training targets and how a step walks through them in chunks.

Points are processed in chunks (the same point range of every item at a time) and gradients
accumulate over the chunks, which gives exactly the full-batch gradient while keeping
activations cache-sized on the CPU (see ``benchmarks/chunking.py``). Items of different sizes
are padded to the largest, and a chunk that lies past an item's end leaves that item out.
:func:`render_points` and :func:`render` evaluate a model the same way, without gradients.

This module knows models only through the :class:`~inrkit.interfaces.INRModel` protocol; it
depends on nothing above :mod:`inrkit.nn`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import einops
import numpy as np
import torch

from inrkit.coords import axes as grid_axes
from inrkit.coords import grid, to_signed, to_unit
from inrkit.interfaces import INRModel

#: Rows (points x items) per chunk on the CPU: keeps a width-256 layer's activations in cache.
CPU_CHUNK_ROWS = 8192
#: Rows per chunk on a GPU when the model's activation bytes per row are unknown (a model
#: without ``layer_defs``): large enough to fill it, small enough for a few GB of activations.
GPU_CHUNK_ROWS = 1 << 18
#: The most rows a GPU chunk holds however much memory is free (a sanity bound on one allocation).
MAX_GPU_CHUNK_ROWS = 1 << 25
#: Share of the card's free memory one chunk's activations may take.
GPU_CHUNK_MEMORY_SHARE = 0.5

#: Equal-shape chunks (:meth:`PointSet.equal_chunks`) may compute at most this many times the
#: real points (the rest is padding of shorter items and of the last chunk).
EQUAL_CHUNK_WASTE = 1.25

#: One chunk: a point range and the rows (items of the set) that still have points there.
Chunk = tuple[slice, "torch.Tensor | None"]


#: Points of evaluation views rendered at once (12 MiB of RGB float32 outputs; see
#: :mod:`inrkit.training.evaluate`). Small runs fit in one block and are rendered once; larger ones hold one
#: block of reconstructions at a time.
EVAL_BLOCK_POINTS = 1 << 20


def auto_chunk_rows(device: torch.device, bytes_per_row: int = 0) -> int:
    """Rows (points x items) per chunk for a device.

    On a GPU the chunk is sized from the card's free memory (``mem_get_info``) and
    ``bytes_per_row``, the activation memory one row needs (:func:`activation_bytes_per_row`):
    as many rows as fit in :data:`GPU_CHUNK_MEMORY_SHARE` of it, so a step that fits in memory
    is one chunk (Kodak-4 at width 256 needs about 32 GB: one chunk on an H200), and a
    complex-valued network (WIRE), several GB at the default size, gets smaller ones. Fewer
    chunks mean fewer launches and no per-item products on one-item slivers. Without
    ``bytes_per_row``, :data:`GPU_CHUNK_ROWS`.
    """
    if device.type != "cuda":
        return CPU_CHUNK_ROWS
    if bytes_per_row <= 0:
        return GPU_CHUNK_ROWS
    free, _ = torch.cuda.mem_get_info(device)
    fits = int(GPU_CHUNK_MEMORY_SHARE * free // bytes_per_row) // 1024 * 1024
    return max(4096, min(MAX_GPU_CHUNK_ROWS, fits))


def activation_bytes_per_row(model: INRModel) -> int:
    """About how many bytes of activations one point of one item needs in a training step.

    Each layer keeps its input, its pre-activation and their gradients (4 numbers per unit),
    complex units count twice. Models without a ``layer_defs`` list (not a MultiINR) give 0,
    which means "unknown".
    """
    defs = getattr(model, "layer_defs", None)
    if not defs:
        return 0
    complex_factor = 2 if any(p.is_complex() for p in model.parameters()) else 1
    return sum(int(d.out_features) for d in defs) * 4 * 4 * complex_factor


def auto_chunk_points(n_items: int, points: int, device: torch.device) -> int:
    """Points per item per chunk so a chunk holds about :func:`auto_chunk_rows` rows."""
    return max(1, min(points, auto_chunk_rows(device) // max(n_items, 1)))


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
        codes: int | None = None,
    ) -> None:
        #: (N, P, C): values in [-1, 1], or with ``codes`` the source's integer codes (see
        #: :func:`integer_codes`), converted chunk by chunk (:meth:`chunk_targets`).
        self.targets = targets
        self.codes = codes
        self.shapes = tuple(tuple(int(n) for n in s) for s in shapes)
        self.counts = [math.prod(s) for s in self.shapes]
        self.item_ids = item_ids
        self.loss_items = loss_items or len(self.shapes)
        self._n_model_items: int | None = None  # set on subsets: the whole run's item count
        device = targets.device
        self._counts = torch.tensor(self.counts, device=device)
        self._dims = torch.tensor(self.shapes, device=device)
        # Items of one shape (the common case) share one grid: (P, in_dim), not (N, P, in_dim).
        self._grid = grid(self.shapes[0], device=device) if len(set(self.shapes)) == 1 else None

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

        Equal to :func:`~inrkit.coords.grid` of each item's shape, sliced; points past an
        item's end get coordinates too (their loss weight is zero).
        """
        rows = self.n_items if items is None else items.shape[0]
        if self._grid is not None and sl.stop <= self._grid.shape[0]:
            return self._grid[sl].expand(rows, -1, -1)
        if self._grid is not None:  # an equal-shape chunk past the end (see equal_chunks): padded
            part = self._grid[sl]
            tail = part.new_zeros(sl.stop - sl.start - part.shape[0], part.shape[1])
            return torch.cat([part, tail]).expand(rows, -1, -1)
        dims = self._dims if items is None else self._dims.index_select(0, items)  # (rows, d)
        index = torch.arange(sl.start, sl.stop, device=dims.device).expand(rows, -1)
        axes = []
        for axis in range(dims.shape[1] - 1, -1, -1):  # row-major: the last axis varies fastest
            n = dims[:, axis : axis + 1]
            axes.append((2.0 * (index % n).float() + 1.0) / n - 1.0)
            index = index // n
        return torch.stack(axes[::-1], dim=-1)

    def chunk_targets(self, sl: slice, items: torch.Tensor | None = None) -> torch.Tensor:
        """A chunk's targets in [-1, 1] (float32), for all rows or the listed ones (up to the last
        point: a chunk past it gets fewer)."""
        stored = self.targets[:, sl] if items is None else self.targets[:, sl].index_select(0, items)
        return stored if self.codes is None else from_codes(stored, self.codes)

    def item_losses(self, pred: torch.Tensor, sl: slice, items: torch.Tensor | None = None) -> torch.Tensor:
        """Each row's share of this chunk in the loss: ``(rows,)``, summing to :meth:`loss`.

        Summed over all chunks, row ``i`` gives item ``i``'s mean squared error divided by the
        number of items. ``items`` restricts the chunk to some rows (``pred`` then has one row
        per listed item).
        """
        targets = self.chunk_targets(sl, items)
        if targets.shape[1] < pred.shape[1]:  # an equal-shape chunk past the last point (equal_chunks)
            targets = torch.nn.functional.pad(targets, (0, 0, 0, pred.shape[1] - targets.shape[1]))
        sq = (pred - targets).square()
        scale = self.targets.shape[-1] * self.loss_items
        if not self.padded and sl.stop <= self.points:
            return sq.sum(dim=(1, 2)) / (self.points * scale)
        counts = self._counts if items is None else self._counts.index_select(0, items)
        inside = torch.arange(sl.start, sl.start + sq.shape[1], device=counts.device) < counts.unsqueeze(1)
        return (sq.sum(dim=2) * inside).sum(dim=1) / (counts * scale)

    def loss(self, pred: torch.Tensor, sl: slice, items: torch.Tensor | None = None) -> torch.Tensor:
        """This chunk's share of the mean over items of each item's mean squared error."""
        return self.item_losses(pred, sl, items).sum()

    def chunks(self, chunk: int) -> list[Chunk]:
        """Point ranges of ``chunk`` points, each with the rows that still have points there.

        Items of different sizes are padded to the largest; a chunk past an item's last point
        leaves that item out instead of computing its padding, and grows so that it keeps
        ``chunk x N`` rows (points x items): with many items of very different sizes, the
        largest item's tail is not cut into thousands of tiny chunks. Consecutive chunks with the same
        rows share one index tensor (the model selects those rows' layers once for the run).
        """
        out: list[Chunk] = []
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

    def equal_chunks(self, plan: Sequence[Chunk]) -> list[Chunk] | None:
        """``plan`` as chunks of one shape, for a compiled step (one graph per fit, no
        recompilation): every item in every chunk, the points split into equal parts of about the
        plan's first chunk's length, the last padded past the end (its padding and every item's
        points past its own end weigh zero). ``None`` when the plan is over blocks of items
        (its first chunk holds some items only), which stays as it is."""
        if not plan or plan[0][1] is not None:
            return None
        first = plan[0][0]
        parts = math.ceil(self.points / max(1, first.stop - first.start))
        size = math.ceil(self.points / parts)
        if self.n_items * parts * size > EQUAL_CHUNK_WASTE * sum(self.counts):
            return None  # items of very different sizes: padding them all would cost more than recompiling
        return [(slice(k * size, (k + 1) * size), None) for k in range(parts)]

    def item_block_chunks(self, rows: int) -> list[Chunk]:
        """Chunks of about ``rows`` rows over blocks of items, for GPUs.

        :meth:`chunks` gives every chunk a slice of every item's points, so every chunk reads
        all per-item weights (and writes their gradients): with many items that traffic grows
        with N x chunks. Here a chunk holds all points (or, for a very large item, ``rows`` of
        them) of a block of items, so each item's weights are read about once per step. When all
        items fit in one chunk this is :meth:`chunks`. Shorter items of a block are padded (their
        extra points weigh zero).
        """
        per_block = max(1, rows // self.points)
        if per_block >= self.n_items:
            return self.chunks(max(1, min(self.points, rows // self.n_items)))
        out: list[Chunk] = []
        for first in range(0, self.n_items, per_block):
            block = list(range(first, min(first + per_block, self.n_items)))
            items = torch.tensor(block, device=self.targets.device)
            length = max(self.counts[i] for i in block)
            step = max(1, rows // len(block))
            for start in range(0, length, step):
                out.append((slice(start, min(start + step, length)), items))
        return out

    @property
    def n_model_items(self) -> int:
        """The model's item count (every process's items): the length of a whole-run loss vector."""
        return self._n_model_items or self.loss_items

    def subset(self, rows: torch.Tensor, loss_items: int) -> PointSet:
        """Rows ``rows`` of this set as a set of their own (a step's item mini-batch).

        Its losses average over ``loss_items`` items (the whole step's batch, every process's
        share), and ``model_items`` still gives the model's index of each row.
        """
        ids = self.model_items(rows)
        shapes = [self.shapes[i] for i in rows.tolist()]
        longest = max(math.prod(s) for s in shapes)  # padded to the longest of these items only
        subset = PointSet(
            self.targets.index_select(0, rows)[:, :longest], shapes, ids if ids is not None else rows, loss_items, self.codes
        )
        subset._n_model_items = self.n_model_items
        return subset

    def to(self, device: torch.device) -> PointSet:
        ids = None if self.item_ids is None else self.item_ids.to(device)
        moved = PointSet(self.targets.to(device), self.shapes, ids, self.loss_items, self.codes)
        moved._n_model_items = self._n_model_items
        return moved

    @classmethod
    def from_arrays(
        cls, arrays: Sequence[np.ndarray], item_ids: Sequence[int] | None = None, loss_items: int | None = None
    ) -> PointSet:
        """Arrays ``(*spatial, C)`` in [0, 1] to padded targets in [-1, 1].

        Arrays that hold exactly 8-bit (or 16-bit) values, ``k / 255`` in float32 as images are
        loaded, are stored as their integer codes (1 or 2 bytes per value instead of 4) and
        converted per chunk to the very same float32 targets. ``item_ids`` (the model's index of
        each array) and ``loss_items`` (the run's item count) describe one process's share of a
        distributed run; a set holding every item of the run in order needs neither, and stores none.
        """
        counts = [int(np.prod(a.shape[:-1])) for a in arrays]
        codes = code_scale(arrays)
        dtype = torch.float32 if codes is None else CODE_DTYPES[codes]
        targets = torch.zeros(len(arrays), max(counts), arrays[0].shape[-1], dtype=dtype)
        for i, arr in enumerate(arrays):  # item by item: no second copy of all items is ever held
            values = to_signed(arr) if codes is None else torch.from_numpy(_to_codes(arr, codes))
            targets[i, : counts[i]] = einops.rearrange(values, "... c -> (...) c")
        whole = loss_items in (None, len(arrays)) and (item_ids is None or list(item_ids) == list(range(len(arrays))))
        ids = None if whole or item_ids is None else torch.tensor(list(item_ids), dtype=torch.long)
        return cls(targets, [a.shape[:-1] for a in arrays], ids, None if whole else loss_items, codes)


#: How integer codes are stored: 8-bit as uint8, 16-bit as int16 shifted by 32768 (PyTorch's
#: uint16 supports too few operations).
CODE_DTYPES = {255: torch.uint8, 65535: torch.int16}
_SHIFT = {255: 0, 65535: 32768}


def integer_codes(arrays: Sequence[np.ndarray]) -> tuple[int, list[np.ndarray]] | None:
    """``(255, codes)`` or ``(65535, codes)`` when every array holds exactly ``k / 255``
    (``k / 65535``) in float32, the values 8-bit (16-bit) images load as, with each array's
    stored codes (see :data:`CODE_DTYPES`); else ``None`` (the targets stay float32)."""
    scale = code_scale(arrays)
    return None if scale is None else (scale, [_to_codes(a, scale) for a in arrays])


def code_scale(arrays: Sequence[np.ndarray]) -> int | None:
    """The scale of :func:`integer_codes` (255 or 65535), or ``None``, without keeping the
    codes: each array's temporaries are freed before the next is checked."""
    if not all(a.dtype == np.float32 and a.size and a.min() >= 0.0 and a.max() <= 1.0 for a in arrays):
        return None
    for scale in (255, 65535):
        if all(np.array_equal(np.rint(a * scale).astype(np.float32) / np.float32(scale), a) for a in arrays):
            return scale
    return None


def _to_codes(a: np.ndarray, scale: int) -> np.ndarray:
    return (np.rint(a * scale).astype(np.int64) - _SHIFT[scale]).astype(np.uint8 if scale == 255 else np.int16)


def from_codes(codes: torch.Tensor, scale: int) -> torch.Tensor:
    """Stored codes to targets in [-1, 1], bit for bit what :func:`~inrkit.coords.to_signed` gives
    for the float32 values ``k / scale`` (one correctly rounded float32 division, then ``2x - 1``)."""
    return ((codes.to(torch.float32) + _SHIFT[scale]) / float(scale)) * 2.0 - 1.0


@torch.no_grad()
def render_points(
    model: INRModel, points: PointSet, chunk_rows: int = CPU_CHUNK_ROWS, device: torch.device | None = None
) -> torch.Tensor:
    """Evaluate ``model`` at every point of ``points``: ``(N, P, C)`` in [0, 1] on ``points``' device.

    ``device`` (default: where ``points`` are) is where the model runs. Only each chunk's
    coordinates travel to it and only its outputs come back, so the targets of ``points`` stay
    where they are: evaluating on a GPU does not hold the data set there a second time. Padding is
    left at 0.
    """
    model.eval()
    home = points.targets.device
    device = device or home
    out = torch.zeros(points.n_items, points.points, points.targets.shape[-1], device=home)
    moving = device != home
    if moving and device.type == "cuda" and home.type == "cpu":
        out = out.pin_memory()  # chunks come back asynchronously
    for sl, items in points.chunks(max(1, chunk_rows // max(points.n_items, 1))):
        coords, model_items = points.chunk_coords(sl, items), points.model_items(items)
        if moving:
            coords = coords.to(device, non_blocking=True)
            model_items = None if model_items is None else model_items.to(device, non_blocking=True)
        pred = model(coords, model_items)
        if items is None:
            out[:, sl].copy_(pred, non_blocking=True)
        else:
            out[items, sl] = pred.to(home)
    if moving and device.type == "cuda":
        torch.cuda.synchronize(device)
    return to_unit(out)


@torch.no_grad()
def render(model: INRModel, coords: torch.Tensor, chunk_rows: int = CPU_CHUNK_ROWS) -> torch.Tensor:
    """Evaluate ``model`` on ``(N, P, in_dim)`` coordinates in chunks; values in [0, 1]."""
    model.eval()
    n, p, _ = coords.shape
    chunk = max(1, chunk_rows // max(n, 1))
    outs = [model(coords[:, s : s + chunk]) for s in range(0, p, chunk)]
    return to_unit(torch.cat(outs, dim=1))


def grid_chunk(shape: Sequence[int], start: int, stop: int, axes: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Rows ``start:stop`` of :func:`~inrkit.coords.grid` of ``shape``, computed without the rest:
    ``(stop - start, len(shape))``, equal to ``grid(shape)[start:stop]`` bit for bit. ``axes``
    are :func:`~inrkit.coords.axes` of ``shape``, passed in when many chunks of one grid are made."""
    if axes is None:
        axes = grid_axes(shape)
    index = torch.arange(start, stop, device=axes[0].device)
    columns = []
    for axis in range(len(shape) - 1, -1, -1):  # row-major: the last axis varies fastest
        columns.append(axes[axis][index % shape[axis]])
        index = index // shape[axis]
    return torch.stack(columns[::-1], dim=-1)


@torch.no_grad()
def render_into(
    model: INRModel, shape: Sequence[int], out: np.ndarray, chunk_rows: int = CPU_CHUNK_ROWS, device: torch.device | None = None
) -> np.ndarray:
    """Evaluate a one-item ``model`` at every pixel centre of ``shape``, chunk by chunk, writing
    values in [0, 1] into ``out`` (``(prod(shape), channels)`` float32, on the host).

    Memory beyond ``out`` is one chunk's coordinates and outputs, whatever the size: a render
    never holds the whole grid or a second copy of the image. Equal to :func:`render` of
    ``grid(shape)`` with the same ``chunk_rows``.
    """
    model.eval()
    device = device or next(model.parameters()).device
    axes = grid_axes(shape, device)
    points = out.shape[0]
    chunk = max(1, int(chunk_rows))
    for start in range(0, points, chunk):
        stop = min(start + chunk, points)
        coords = grid_chunk(shape, start, stop, axes).unsqueeze(0)
        out[start:stop] = to_unit(model(coords))[0].float().cpu().numpy()
    return out
