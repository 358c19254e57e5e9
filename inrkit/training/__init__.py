"""Training: the generic trainer, points and chunks, processes, evaluation, the optimiser.

The trainer runs any model of the :class:`~inrkit.interfaces.INRModel` protocol. The names below
are the package's public surface; its modules are internal and may move.
``inrkit.training.evaluate`` is the evaluation module (``evaluate.evaluate`` its function), so the
package does not re-export that function under the module's name.
"""

from inrkit.training.batches import ItemBatches
from inrkit.training.distributed import ProcessGroup, SingleProcess, TorchDistributed, is_main_process
from inrkit.training.evaluate import Reconstructions, render_items
from inrkit.training.optim import LazyItemAdam
from inrkit.training.perf import autocast_dtype, compile_forward
from inrkit.training.points import (
    CPU_CHUNK_ROWS,
    GPU_CHUNK_ROWS,
    PointSet,
    auto_chunk_points,
    render,
    render_points,
)
from inrkit.training.trainer import CallbackList, ChunkedStep, FitState, Trainer, fit_memory

__all__ = [
    "CPU_CHUNK_ROWS",
    "CallbackList",
    "ChunkedStep",
    "FitState",
    "GPU_CHUNK_ROWS",
    "ItemBatches",
    "LazyItemAdam",
    "PointSet",
    "ProcessGroup",
    "Reconstructions",
    "SingleProcess",
    "TorchDistributed",
    "Trainer",
    "auto_chunk_points",
    "autocast_dtype",
    "compile_forward",
    "fit_memory",
    "is_main_process",
    "render",
    "render_items",
    "render_points",
]
