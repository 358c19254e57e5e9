"""Scoring a model on every item's evaluation view: one :func:`evaluate` for runs and callbacks.

The model is rendered at every point of each item's evaluation view (super-resolution: the
full-size image, not the downsampled one it was fitted to), in chunks, and scored per item:
PSNR on outputs clamped to [0, 1], SSIM as Wang et al., plus the signal's own reference
figures. :class:`~inrkit.results.RunMetrics` summarises the result for ``metrics.json``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from inrkit.interfaces import INRModel, Item, Signal
from inrkit.metrics import psnr, ssim
from inrkit.points import PointSet, auto_chunk_rows, render_points
from inrkit.results import Evaluation, item_metrics


def evaluate(
    model: INRModel, items: Sequence[Item], signal: Signal, device: torch.device, *, step: int = 0, final: bool = True
) -> Evaluation:
    """Render every item's evaluation view and score it; reconstructions come back on the CPU.

    The targets stay on the CPU: the model runs on ``device`` chunk by chunk, and scoring is done
    on the CPU, so a GPU holds only the model and one chunk's activations.
    """
    targets = [signal.eval_view(item) for item in items]
    points = PointSet.from_arrays(targets)
    rendered = render_points(model, points, auto_chunk_rows(device), device=device)
    recons = [rendered[i, : points.counts[i]].reshape(arr.shape).numpy() for i, arr in enumerate(targets)]
    scores = [
        item_metrics(item.name, target, _finite(psnr(recon, target)), ssim(recon, target), signal.extra_metrics(item))
        for item, recon, target in zip(items, recons, targets, strict=True)
    ]
    return Evaluation(step=step, items=scores, reconstructions=recons, final=final)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
