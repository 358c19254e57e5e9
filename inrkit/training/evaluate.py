"""Scoring a model on every item's evaluation view: one :func:`evaluate` for runs and callbacks.

The model is rendered at every point of each item's evaluation view (super-resolution: the
full-size image, not the downsampled one it was fitted to), in chunks, and scored per item:
PSNR on outputs clamped to [0, 1], SSIM as Wang et al., MS-SSIM where it is defined
(:mod:`inrkit.metrics`), plus the signal's own reference figures. :class:`~inrkit.results.RunMetrics` summarises the result for ``metrics.json``.

Items are rendered in blocks of about :data:`EVAL_BLOCK_POINTS` points, so that a collection's
reconstructions are never all in memory at once: scores are computed block by block, and
:class:`Reconstructions` renders them again on demand, one block at a time, for whoever reads
them (the run's files, the figures, a callback).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np
import torch

from inrkit.interfaces import INRModel, Item, Signal
from inrkit.metrics import ms_ssim, psnr, ssim
from inrkit.results import Evaluation, item_metrics
from inrkit.training.points import EVAL_BLOCK_POINTS, PointSet, auto_chunk_rows, render_points


def item_blocks(sizes: Sequence[int], budget: int = EVAL_BLOCK_POINTS) -> list[range]:
    """Consecutive runs of items whose sizes (points) add up to at most ``budget``; an item larger
    than the budget is a block of its own."""
    blocks: list[range] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + size > budget:
            blocks.append(range(start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        blocks.append(range(start, len(sizes)))
    return blocks


class Reconstructions(Sequence[np.ndarray]):
    """Each item's reconstruction, ``(*spatial, channels)`` in [0, 1], rendered when read.

    Reading in order renders one block of items at a time and keeps only that block; reading one
    item out of order renders that item alone. The model must not change while this is read:
    :class:`~inrkit.results.Evaluation` closes it (:meth:`close`) once the step's callbacks have
    run, and reading it after that is an error that says so. The final evaluation's stays open,
    since the trained model does not change any more.
    """

    def __init__(self, model: INRModel, items: Sequence[Item], signal: Signal, device: torch.device,
                 block_points: int = EVAL_BLOCK_POINTS) -> None:
        self._model: INRModel | None = model
        self._items, self._signal, self._device = list(items), signal, device
        self._blocks = item_blocks([math.prod(signal.eval_view(it).shape[:-1]) for it in self._items], block_points)
        self._block_of = [b for b, block in enumerate(self._blocks) for _ in block]
        self._cached: tuple[range, list[np.ndarray]] | None = None

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...
    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = range(len(self))[index]  # IndexError and negative indices as a list's
        if self._cached is None or i not in self._cached[0]:
            self._cached = (self._blocks[self._block_of[i]], self.render(self._blocks[self._block_of[i]]))
        block, arrays = self._cached
        return arrays[i - block.start]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def render(self, indices: Sequence[int]) -> list[np.ndarray]:
        """The reconstructions of ``indices`` (any items, in any order), rendered together now."""
        if self._model is None:
            raise RuntimeError(
                "these reconstructions belong to an evaluation during training and are rendered from the "
                "model as it was then; read them inside on_evaluate (the model has trained on since)"
            )
        targets = [self._signal.eval_view(self._items[i]) for i in indices]
        return render_items(self._model, targets, self._device, indices, len(self._items))

    def cache(self, block: range, arrays: list[np.ndarray]) -> None:
        """Keep ``arrays`` (already rendered) as the reconstructions of ``block``."""
        self._cached = (block, arrays)

    @property
    def blocks(self) -> list[range]:
        return list(self._blocks)

    def close(self) -> None:
        """Release the model and the rendered block; reading afterwards is an error."""
        self._model, self._cached = None, None


def select(reconstructions: Sequence[np.ndarray], indices: Sequence[int]) -> list[np.ndarray]:
    """The reconstructions of ``indices``: rendered together when they are :class:`Reconstructions`
    (a sample spread over a large collection costs one render of those items, not of their blocks)."""
    if isinstance(reconstructions, Reconstructions):
        return reconstructions.render(indices)
    return [reconstructions[i] for i in indices]


def render_items(
    model: INRModel, targets: Sequence[np.ndarray], device: torch.device, indices: Sequence[int] | None = None,
    n_items: int | None = None,
) -> list[np.ndarray]:
    """``model`` rendered at every point of ``targets``' shapes, each reshaped like its target.

    ``indices`` are the model's items that ``targets`` belong to, of its ``n_items`` (default: all,
    in order). The model's train/eval mode is restored afterwards (a callback may render during
    training).
    """
    points = PointSet.from_arrays(list(targets), item_ids=indices, loss_items=n_items)
    training = getattr(model, "training", None)
    try:
        rendered = render_points(model, points, auto_chunk_rows(device), device=device)
    finally:
        if training is not None:
            model.train(training)
    return [rendered[k, : points.counts[k]].reshape(arr.shape).numpy() for k, arr in enumerate(targets)]


def evaluate(
    model: INRModel, items: Sequence[Item], signal: Signal, device: torch.device, *, step: int = 0, final: bool = True,
    block_points: int = EVAL_BLOCK_POINTS,
) -> Evaluation:
    """Render every item's evaluation view and score it, a block of items at a time; the
    reconstructions come back as :class:`Reconstructions` (rendered again when read, on the CPU).

    The targets stay on the CPU: the model runs on ``device`` chunk by chunk, and scoring is done
    on the CPU, so a GPU holds only the model and one chunk's activations.
    """
    recons = Reconstructions(model, items, signal, device, block_points)
    scores = []
    for block in recons.blocks:
        arrays = recons.render(block)
        for i, recon in zip(block, arrays, strict=True):
            item, target = items[i], signal.eval_view(items[i])
            scores.append(item_metrics(
                item.name, target, _finite(psnr(recon, target)), ssim(recon, target), signal.extra_metrics(item),
                ms_ssim=ms_ssim(recon, target),
            ))
        recons.cache(block, arrays)  # the last block stays: a run of one block is rendered once
    return Evaluation(step=step, items=scores, reconstructions=recons, final=final)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
