"""The public surface is a promise: what ``inrkit`` and each subpackage export, pinned here.

A name added to or removed from an ``__all__`` fails this test until the set below changes with
it, so a change of surface is always a visible diff (and a CHANGELOG line). The second half
checks that every dotted ``inrkit.…`` reference in the docs and the code still names something
that exists: a module moved without its pages being updated fails here, not in a user's hands.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import inrkit

ROOT = Path(__file__).resolve().parents[1]

SURFACES: dict[str, set[str]] = {
    "inrkit": {
        "Callback", "FitResult", "INRModel", "Run", "RunMetrics", "Trainer", "__version__",
        "as_config", "compress", "coords", "create_model", "decode", "encode", "fit", "hookimpl",
        "load", "memory_estimate", "parameter_counts",
    },
    "inrkit.plugins": {
        "PROJECT_NAME", "PluginFailure", "PluginRegistry", "RegisteredClass", "get_registry",
        "hookimpl", "hookspec", "reset_registry",
    },
    "inrkit.training": {
        "CPU_CHUNK_ROWS", "CallbackList", "ChunkedStep", "FitState", "GPU_CHUNK_ROWS",
        "ItemBatches", "LazyItemAdam", "PointSet", "ProcessGroup", "Reconstructions",
        "SingleProcess", "TorchDistributed", "Trainer", "auto_chunk_points", "autocast_dtype",
        "compile_forward", "fit_memory", "is_main_process", "render", "render_items",
        "render_points",
    },
    "inrkit.codec": {
        "FineTuning", "Header", "InrzFile", "MODEL_NAMES", "Quantised", "Sizes", "choose_steps",
        "decode_block", "encode_block", "finetune", "is_inrz", "quantise",
    },
    "inrkit.runs": {
        "CHECKPOINT_FILE", "CONFIG_FILE", "CheckpointInfo", "CompressResult", "CompressedRun",
        "FAILED_FILE", "FitResult", "METRICS_FILE", "Prepared", "RECON_DIR", "RESUME_FILE",
        "Rate", "Run", "RunFolder", "RunSession", "fit_run", "load", "new_run_folder",
        "open_checkpoint", "prepare", "read_state", "save_checkpoint", "verify",
        "write_run_plots",
    },
    "inrkit.experiments": {
        "CODECS", "FailedPoint", "Interval", "Point", "PointResult", "Variant", "bd_delta",
        "codec_point", "paired_cell", "paired_difference", "pareto", "t_interval",
    },
    "inrkit.tools": {
        "LayerStatistics", "activation_report", "analyze_weights", "format_report", "gather",
        "layer_statistics", "run_bench", "sample_coords", "write_analysis",
    },
    "inrkit.cli": {"main"},
}  # fmt: skip


def _submodules(package: str) -> set[str]:
    module = importlib.import_module(package)
    return {info.name for info in pkgutil.iter_modules(module.__path__)}


def test_every_subpackage_has_a_pinned_surface():
    found = {f"inrkit.{name}" for name in _submodules("inrkit") if not name.startswith("_")}
    packages = {p for p in found if hasattr(importlib.import_module(p), "__path__")}
    assert packages - {"inrkit.testing"} == set(SURFACES) - {"inrkit"}, "a new subpackage needs a pinned surface"


@pytest.mark.parametrize("package", sorted(SURFACES))
def test_the_surface_is_what_was_promised(package: str):
    module = importlib.import_module(package)
    exported = list(module.__all__)
    assert set(exported) == SURFACES[package], (
        f"{package}.__all__ changed: added {sorted(set(exported) - SURFACES[package])}, "
        f"removed {sorted(SURFACES[package] - set(exported))}; update this test and the CHANGELOG"
    )
    assert exported == sorted(exported), f"{package}.__all__ is not sorted"
    assert len(exported) == len(set(exported)), f"{package}.__all__ lists a name twice"
    for name in exported:
        assert getattr(module, name) is not None, f"{package}.{name} does not resolve"


@pytest.mark.parametrize("package", sorted(p for p in SURFACES if p != "inrkit"))
def test_no_exported_name_shadows_a_submodule(package: str):
    """``inrkit.runs.compress`` must stay the module: a function of that name would hide it."""
    clash = set(importlib.import_module(package).__all__) & _submodules(package)
    assert not clash, f"{package} exports {sorted(clash)}, which shadow its submodules"


#: ``inrkit.x`` strings that are values, not references: file-format identifiers written into
#: checkpoints, experiment folders, failed-run markers and rd summaries.
FORMAT_IDS = {"inrkit.checkpoint", "inrkit.experiment", "inrkit.failed", "inrkit.rd",
              "inrkit.group", "inrkit.role", "inrkit.run_dir"}  # the mlflow callback's run tags
REFERENCE = re.compile(r"(?<![\w./-])inrkit(?:\.[A-Za-z_]\w*)+")
DOCUMENTS = sorted(
    [
        *(ROOT / "docs").rglob("*.md"),
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
        *(ROOT / "benchmarks").glob("*.md"),
        *(ROOT / "inrkit").rglob("*.py"),
        *(ROOT / "plugins").rglob("*.py"),
        *(ROOT / "benchmarks").glob("*.py"),
        *(ROOT / "examples").rglob("*.py"),
    ]
)


def _resolves(dotted: str) -> bool:
    """Whether ``dotted`` names a module, or an attribute reached from the longest module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_dotted_reference_resolves(path: Path):
    text = path.read_text(encoding="utf-8")
    names = {m.rstrip(".") for m in REFERENCE.findall(text)} - FORMAT_IDS
    stale = sorted(name for name in names if not _resolves(name))
    assert not stale, f"{path.relative_to(ROOT)} names what does not exist: {stale}"


def test_the_reference_scan_finds_references():
    """Guard against a pattern that matches nothing (the test above would pass vacuously)."""
    found = REFERENCE.findall("see `inrkit.runs.folder.load` and inrkit.coords.grid, not x/inrkit.y")
    assert found == ["inrkit.runs.folder.load", "inrkit.coords.grid"]
    assert _resolves("inrkit.runs.folder.load") and not _resolves("inrkit.runs.folder.nothing")
    assert not _resolves("inrkit.artifacts.save_checkpoint")
    assert inrkit.__all__ == sorted(inrkit.__all__)
