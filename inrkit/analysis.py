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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inrkit import artifacts
from inrkit.errors import CheckpointError


def _weights_by_layer(run_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{layer: {curve label: flat weights}}`` from a run's checkpoint."""
    from safetensors import safe_open

    path = run_dir / artifacts.CHECKPOINT_FILE
    meta = artifacts.read_metadata(path)  # validates the file
    names = [it["name"] for it in meta.get("items", [])]
    layers: dict[str, dict[str, np.ndarray]] = {}
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        for key in handle.keys():  # noqa: SIM118 - a safetensors handle is not a dict
            parts = key.split(".")
            if parts[-1] != "weight" or parts[-2] == "latent":
                continue
            if parts[0] == "shared":
                layer, label = parts[1], "shared"
            else:
                layer, index = parts[2], int(parts[1])
                label = names[index] if index < len(names) else f"item{index}"
            tensor = handle.get_tensor(key)
            if tensor.is_complex():
                tensor = __import__("torch").view_as_real(tensor)
            layers.setdefault(layer, {})[f"{run_dir.name}/{label}" if label != "shared" else f"{run_dir.name}/shared"] = (
                tensor.float().numpy().ravel()
            )
    return layers


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
    """Per-layer statistics and between-item similarity of the weights of one or more runs."""
    from scipy.stats import kurtosis, wasserstein_distance

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
        curves = merged[layer]
        pooled = np.concatenate(list(curves.values()))
        scale = float(pooled.std()) or 1.0
        stats = {
            label: {
                "count": int(w.size),
                "mean": float(w.mean()),
                "std": float(w.std()),
                "min": float(w.min()),
                "max": float(w.max()),
                "excess_kurtosis": float(kurtosis(w)) if w.size > 3 else None,
            }
            for label, w in curves.items()
        }
        pairs = list(itertools.combinations(curves, 2))
        distances = [wasserstein_distance(curves[a], curves[b]) / scale for a, b in pairs]
        report["layers"].append(
            {
                "layer": layer,
                "curves": len(curves),
                "pooled_std": scale,
                "excess_kurtosis_mean": float(np.mean([v["excess_kurtosis"] for v in stats.values() if v["excess_kurtosis"] is not None] or [np.nan])),
                "normalized_w1_mean": float(np.mean(distances)) if distances else None,
                "normalized_w1_max": float(np.max(distances)) if distances else None,
                "per_curve": stats,
            }
        )
    inner = [r["normalized_w1_mean"] for r in report["layers"] if r["layer"].startswith("hidden") and r["normalized_w1_mean"] is not None]
    ends = [r["normalized_w1_mean"] for r in report["layers"] if r["layer"] in ("first", "last") and r["normalized_w1_mean"] is not None]
    report["middle_layers_more_alike"] = (max(inner) < min(ends)) if inner and ends else None
    return report


def plot_weights(runs: Sequence[str | Path], output: str | Path, bins: int = 80) -> Path:
    """The Figure-2-style panel figure: one panel per layer, one histogram curve per item."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    merged: dict[str, dict[str, np.ndarray]] = {}
    for run in runs:
        layers = _weights_by_layer(Path(run))
        for layer, curves in layers.items():
            merged.setdefault(layer, {}).update(curves)
    names = sorted(merged, key=_layer_rank)
    cols = len(names)
    fig, axes = plt.subplots(1, cols, figsize=(3.2 * cols, 2.8), squeeze=False)
    for ax, layer in zip(axes[0], names, strict=True):
        curves = merged[layer]
        pooled = np.concatenate(list(curves.values()))
        lo, hi = np.percentile(pooled, [0.5, 99.5])
        edges = np.linspace(lo, hi, bins + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        for label, w in curves.items():
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
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return output
