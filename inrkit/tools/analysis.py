"""Layer-wise weight distributions across items (the paper's Figure 2), as a figure and numbers.

MINR rests on an observation: across separately trained INRs the intermediate layers' weights
follow alike, bell-shaped distributions, while the first layer stays near its uniform
initialisation and the last looks bimodal, both differing between images. :func:`analyze_weights`
makes that checkable on any runs: per layer, one histogram per item (or one for a shared layer),
summary statistics (excess kurtosis tells the shapes apart: about -1.2 for a uniform, 0 for a
Gaussian bell, near -2 for a two-peaked distribution), and the mean pairwise 1-Wasserstein distance between items' weight
distributions divided by the layer's pooled standard deviation (scale-free, so layers compare).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inrkit import files
from inrkit.errors import CheckpointError, StorageError
from inrkit.runs import checkpoint, layout


def _weights_by_layer(run_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{layer: {curve label: flat weights}}`` from a run's checkpoint (its SHA-256, metadata and
    tensor keys checked first: a checkpoint is untrusted data)."""
    path = run_dir / layout.CHECKPOINT_FILE
    metadata = checkpoint.read_metadata(path)
    files.verify_checksums(run_dir, required=[layout.CHECKPOINT_FILE])
    info = checkpoint.validate_metadata(path, metadata)
    names = [it.name for it in info.items]
    checkpoint.check_layout(path, len(names))
    handle, _ = checkpoint.open_checkpoint(path)
    layers: dict[str, dict[str, np.ndarray]] = {}
    for key in handle.keys():  # noqa: SIM118 - a safetensors handle is not a dict
        index, rest = checkpoint.parse_key(key, path)
        parts = rest.split(".")
        if index is None:
            if parts[0] != "shared":
                continue  # a strategy's own tensor outside shared/items
            if len(parts) < 3:
                raise CheckpointError(f"{path}: malformed tensor key {key!r} (expected shared.<layer>.<name>)")
            layer, label = parts[1], "shared"
        else:
            if len(parts) < 2:
                raise CheckpointError(f"{path}: malformed tensor key {key!r} (expected items.<index>.<layer>.<name>)")
            layer, label = parts[0], names[index]
        if parts[-1] != "weight" or parts[-2] == "latent":
            continue
        tensor = checkpoint.read_tensor(handle, key, path)
        if tensor.is_complex():
            tensor = __import__("torch").view_as_real(tensor)
        layers.setdefault(layer, {})[f"{run_dir.name}/{label}"] = tensor.float().numpy().ravel()
    return layers


def _number(value: Any) -> float | None:
    """A statistic for JSON: ``None`` where it is undefined (NaN, infinite)."""
    return float(value) if np.isfinite(value) else None


def _curve_stats(w: np.ndarray) -> dict[str, Any]:
    from scipy.stats import kurtosis

    finite = w[np.isfinite(w)]
    stats: dict[str, Any] = {"count": int(w.size), "finite": int(finite.size)}
    if finite.size:
        stats.update(mean=_number(finite.mean()), std=_number(finite.std()), min=_number(finite.min()), max=_number(finite.max()))
    else:
        stats.update(mean=None, std=None, min=None, max=None)
    spread = finite.size > 3 and float(finite.std()) > 0
    stats["excess_kurtosis"] = _number(kurtosis(finite)) if spread else None
    return stats


def _layer_rank(name: str) -> tuple[int, int]:
    if name == "first":
        return 0, 0
    if name == "projection":
        return 1, 0
    if name.startswith("hidden") and name[6:].isdigit():
        return 2, int(name[6:])
    if name == "last":
        return 4, 0
    return 3, 0


def analyze_weights(runs: Sequence[str | Path]) -> dict[str, Any]:
    """Per-layer statistics and between-item similarity of the weights of one or more runs.

    Statistics that are undefined (a layer of one weight, constant or non-finite weights) are
    ``None``, so the report is always valid JSON; non-finite weights are left out of them.
    """
    from scipy.stats import wasserstein_distance

    if not runs:
        raise CheckpointError("give at least one run folder")
    merged: dict[str, dict[str, np.ndarray]] = {}
    for run in runs:
        run_dir = Path(run)
        if not run_dir.is_dir():
            raise CheckpointError(f"run folder not found: {run_dir}")
        layers = _weights_by_layer(run_dir)
        for layer, curves in layers.items():
            merged.setdefault(layer, {}).update(curves)
    report: dict[str, Any] = {"runs": [str(r) for r in runs], "layers": []}
    for layer in sorted(merged, key=_layer_rank):
        curves = {label: w[np.isfinite(w)] for label, w in merged[layer].items()}
        pooled = np.concatenate(list(curves.values()))
        scale = float(pooled.std()) if pooled.size else 0.0
        scale = scale or 1.0
        stats = {label: _curve_stats(w) for label, w in merged[layer].items()}
        pairs = [(a, b) for a, b in itertools.combinations(curves, 2) if curves[a].size and curves[b].size]
        distances = [float(wasserstein_distance(curves[a], curves[b])) / scale for a, b in pairs]
        distances = [d for d in distances if np.isfinite(d)]
        kurt = [v["excess_kurtosis"] for v in stats.values() if v["excess_kurtosis"] is not None]
        report["layers"].append(
            {
                "layer": layer,
                "curves": len(curves),
                "pooled_std": scale,
                "excess_kurtosis_mean": _number(np.mean(kurt)) if kurt else None,
                "normalized_w1_mean": _number(np.mean(distances)) if distances else None,
                "normalized_w1_max": _number(np.max(distances)) if distances else None,
                "per_curve": stats,
            }
        )
    inner = [r["normalized_w1_mean"] for r in report["layers"] if r["layer"].startswith("hidden") and r["normalized_w1_mean"] is not None]
    ends = [r["normalized_w1_mean"] for r in report["layers"] if r["layer"] in ("first", "last") and r["normalized_w1_mean"] is not None]
    report["middle_layers_more_alike"] = (max(inner) < min(ends)) if inner and ends else None
    return report


def write_analysis(runs: Sequence[str | Path], figure: str | Path, numbers: str | Path) -> dict[str, Any]:
    """Analyse ``runs`` and write the figure (PNG) and the numbers (JSON): both, or neither.

    Everything is computed and the figure drawn to a temporary file beside ``figure`` first; then
    the JSON is written and the figure renamed into place. When anything fails, neither output
    changes (files from an earlier analysis stay as they were).
    """
    figure, numbers = Path(figure), Path(numbers)
    report = analyze_weights(runs)
    drawn = figure.with_name(f".{figure.stem}.drawing.png")
    try:
        plot_weights(runs, drawn)
        files.write_json(numbers, report)
        try:
            os.replace(drawn, figure)
        except OSError as exc:
            raise StorageError(f"cannot write {figure}: {exc.strerror or exc}") from None
    finally:
        drawn.unlink(missing_ok=True)
    return report


def plot_weights(runs: Sequence[str | Path], output: str | Path, bins: int = 80) -> Path:
    """The Figure-2-style panel figure: one panel per layer, one histogram curve per item."""
    from inrkit.runs.plots import pyplot, save_figure

    merged: dict[str, dict[str, np.ndarray]] = {}
    for run in runs:
        layers = _weights_by_layer(Path(run))
        for layer, curves in layers.items():
            merged.setdefault(layer, {}).update(curves)
    names = sorted(merged, key=_layer_rank)
    cols = len(names)
    fig, axes = pyplot().subplots(1, cols, figsize=(3.2 * cols, 2.8), squeeze=False)
    for ax, layer in zip(axes[0], names, strict=True):
        curves = {label: w[np.isfinite(w)] for label, w in merged[layer].items()}
        pooled = np.concatenate(list(curves.values()))
        lo, hi = np.percentile(pooled, [0.5, 99.5]) if pooled.size else (-1.0, 1.0)
        if hi <= lo:  # one weight, or all equal: a window around it
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        for label, w in curves.items():
            with np.errstate(invalid="ignore", divide="ignore"):  # an empty curve has no density
                density, _ = np.histogram(w, bins=edges, density=True)
            ax.plot(centres, density, lw=1.2, label=label.split("/", 1)[-1])
        ax.set_title(layer)
        ax.set_xlabel("weight")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
    axes[0][0].set_ylabel("density")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if len(labels) <= 12:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), fontsize=8, bbox_to_anchor=(0.5, 1.08))
    fig.tight_layout()
    return save_figure(fig, Path(output), dpi=120, bbox_inches="tight")
