"""inrkit: implicit neural representations for many signals at once, built from plugins.

The public names below are imported on first use, so ``import inrkit`` in a plugin (for
``inrkit.hookimpl``) stays light and never loads torch or the plugins.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from inrkit._version import __version__
from inrkit.plugins.hookspecs import hookimpl

# Intel MKL picks its code path per process (memory alignment, thread count), so two identical
# CPU runs could differ in the last bits (measured: 1 run in 12 at float32). Strict conditional
# numerical reproducibility makes every rerun on the same machine bit-identical, at a cost within
# noise (benchmarks/RESULTS.md). It must be set before MKL starts, i.e. before torch is imported;
# a value the user set is kept.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

if TYPE_CHECKING:
    from inrkit import coords
    from inrkit.api import as_config, decode, encode, fit, memory_estimate, parameter_counts
    from inrkit.factory import create_model
    from inrkit.interfaces import Callback, INRModel
    from inrkit.results import RunMetrics
    from inrkit.runs.compress import compress
    from inrkit.runs.fit import FitResult
    from inrkit.runs.folder import Run, load
    from inrkit.training.trainer import Trainer

#: Public name -> module that defines it (imported on first access).
_LAZY = {
    "fit": "inrkit.api",
    "encode": "inrkit.api",
    "decode": "inrkit.api",
    "parameter_counts": "inrkit.api",
    "memory_estimate": "inrkit.api",
    "as_config": "inrkit.api",
    "compress": "inrkit.runs.compress",
    "load": "inrkit.runs.folder",
    "Run": "inrkit.runs.folder",
    "FitResult": "inrkit.runs.fit",
    "create_model": "inrkit.factory",
    "Trainer": "inrkit.training.trainer",
    "RunMetrics": "inrkit.results",
    "Callback": "inrkit.interfaces",
    "INRModel": "inrkit.interfaces",
}
#: Submodules reachable as attributes (``inrkit.coords.grid``) without importing them first.
_SUBMODULES = ("coords", "errors", "plugins", "testing")

__all__ = [
    "Callback",
    "FitResult",
    "INRModel",
    "Run",
    "RunMetrics",
    "Trainer",
    "__version__",
    "as_config",
    "compress",
    "coords",
    "create_model",
    "decode",
    "encode",
    "fit",
    "hookimpl",
    "load",
    "memory_estimate",
    "parameter_counts",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"inrkit.{name}")
    raise AttributeError(f"module 'inrkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
