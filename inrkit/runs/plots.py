"""Figures for a run folder: training curves, a reconstruction contact sheet, zoomed crops.

Written to ``<run>/plots/`` by ``inrkit run`` (``--no-plots`` or ``INRKIT_PLOTS=0`` to skip) and
by :func:`inrkit.fit` with ``plots=True``. Matplotlib runs headless (Agg).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inrkit import files
from inrkit.results import RunMetrics

#: At most this many items appear in the contact sheet and the crop figure.
MAX_ITEMS = 12


def pyplot() -> Any:
    """matplotlib's ``pyplot`` on the headless Agg backend (no display is needed or opened)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _show(ax: Any, image: np.ndarray, title: str | None = None) -> None:
    ax.imshow(np.clip(image[..., 0] if image.shape[-1] == 1 else image[..., :3], 0, 1), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def training_curves(metrics: RunMetrics, path: Path) -> Path:
    """Loss (log scale) and PSNR per item against the step."""
    plt = pyplot()
    history = metrics.history
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(9, 3.2))
    steps = [h.step for h in history]
    ax_loss.semilogy(steps, [max(h.loss, 1e-12) for h in history])
    ax_loss.set(xlabel="step", ylabel="loss (MSE on [-1, 1])", title="training loss")
    names = [it.name for it in metrics.items]
    if history:
        per_item = np.array([h.item_psnr for h in history])
        for i in range(min(per_item.shape[1], MAX_ITEMS)):
            ax_psnr.plot(steps, per_item[:, i], lw=1, label=names[i] if i < len(names) else str(i))
        if per_item.shape[1] <= MAX_ITEMS:
            ax_psnr.legend(fontsize=7)
    ax_psnr.plot(steps, [h.psnr for h in history], "k--", lw=1.5, label="mean loss")
    ax_psnr.set(xlabel="step", ylabel="PSNR (dB, unclamped)", title="PSNR per item during training")
    fig.tight_layout()
    return save_figure(fig, path)


def shown_items(count: int, most: int = MAX_ITEMS) -> list[int]:
    """Which of ``count`` items the image figures show: all of them up to ``most``, else ``most``
    spread evenly over the collection (first and last included), in order."""
    if count <= most:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, most)})


def contact_sheet(names: Sequence[str], targets: Sequence[np.ndarray], recons: Sequence[np.ndarray], path: Path) -> Path:
    """One row per item: original, reconstruction, absolute error (x5, clipped)."""
    plt = pyplot()
    n = min(len(names), MAX_ITEMS)
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.4 * n), squeeze=False)
    for row in range(n):
        target, recon = targets[row], recons[row]
        error = np.abs(recon - target).mean(axis=-1)
        mse = float(np.mean((np.clip(recon, 0, 1) - target) ** 2))
        psnr = 10 * np.log10(1 / mse) if mse > 0 else float("inf")
        _show(axes[row][0], target, f"{names[row]}: original")
        _show(axes[row][1], recon, f"reconstruction, {psnr:.2f} dB")
        axes[row][2].imshow(np.clip(error * 5, 0, 1), cmap="inferno", vmin=0, vmax=1)
        axes[row][2].set_xticks([])
        axes[row][2].set_yticks([])
        axes[row][2].set_title("|error| x5", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def detail_boxes(image: np.ndarray, count: int = 3, size: int | None = None) -> list[tuple[int, int, int]]:
    """``(row, col, side)`` of square regions with the strongest detail (gradient energy), not overlapping."""
    gray = image.mean(axis=-1)
    h, w = gray.shape
    side = size or max(8, min(h, w) // 6)
    gy, gx = np.gradient(gray)
    energy = gy**2 + gx**2
    # Energy of every side x side window via an integral image.
    integral = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    window = integral[side:, side:] - integral[:-side, side:] - integral[side:, :-side] + integral[:-side, :-side]
    boxes: list[tuple[int, int, int]] = []
    window = window.copy()
    for _ in range(count):
        if window.size == 0 or not np.isfinite(window).any():
            break
        r, c = np.unravel_index(int(np.nanargmax(window)), window.shape)
        boxes.append((int(r), int(c), side))
        window[max(0, r - side) : r + side, max(0, c - side) : c + side] = -np.inf
    return boxes


def detail_crops(
    names: Sequence[str],
    targets: Sequence[np.ndarray],
    recons: Sequence[np.ndarray],
    references: Sequence[Mapping[str, np.ndarray]],
    path: Path,
) -> Path:
    """Zoomed crops of the regions with most detail: ground truth, each reference, the INR (Figure 4)."""
    plt = pyplot()
    n = min(len(names), MAX_ITEMS)
    ref_names = list(references[0]) if references else []
    columns = 2 + len(ref_names)
    boxes = [detail_boxes(targets[i]) for i in range(n)]
    rows = sum(len(b) for b in boxes)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.2 * rows), squeeze=False)
    r = 0
    for i in range(n):
        for y, x, side in boxes[i]:
            crops = [("ground truth", targets[i])] + [(k, references[i][k]) for k in ref_names] + [("INR", recons[i])]
            for col, (label, image) in enumerate(crops):
                _show(axes[r][col], image[y : y + side, x : x + side], f"{names[i]} {label}" if col == 0 else label)
            r += 1
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig: Any, path: Path, dpi: int = 110, **savefig: Any) -> Path:
    """Save a figure atomically (a full disk leaves no empty or partial figure behind) in the
    format its suffix names, and close it."""
    import matplotlib.pyplot as plt

    try:
        files.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png", **savefig))
    finally:
        plt.close(fig)
    return path


def write_run_plots(
    folder: Path,
    metrics: RunMetrics,
    names: Sequence[str],
    targets: Sequence[np.ndarray],
    recons: Sequence[np.ndarray],
    references: Sequence[Mapping[str, np.ndarray]],
) -> list[Path]:
    """All figures that apply: curves always, images when the items are 2-D."""
    paths = [training_curves(metrics, folder / "training.png")]
    if targets and targets[0].ndim == 3:
        paths.append(contact_sheet(names, targets, recons, folder / "reconstructions.png"))
        if references and references[0]:
            paths.append(detail_crops(names, targets, recons, references, folder / "crops.png"))
    return paths
