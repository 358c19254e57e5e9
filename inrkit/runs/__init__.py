"""Runs: a config fitted into a run folder, the folder read back, checkpoints, compression, plots.

``inrkit.runs.compress`` is the compression module (``compress.compress``, also ``inrkit.compress``),
so the package does not re-export that function under the module's name.
"""

from inrkit.runs.checkpoint import CheckpointInfo, open_checkpoint, read_state, save_checkpoint
from inrkit.runs.compress import CompressResult, Rate
from inrkit.runs.fit import FitResult, Prepared, RunSession, fit_run, prepare
from inrkit.runs.folder import CompressedRun, Run, RunFolder, load, verify
from inrkit.runs.layout import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    FAILED_FILE,
    METRICS_FILE,
    RECON_DIR,
    RESUME_FILE,
    new_run_folder,
)
from inrkit.runs.plots import write_run_plots

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "CheckpointInfo",
    "CompressResult",
    "CompressedRun",
    "FAILED_FILE",
    "FitResult",
    "METRICS_FILE",
    "Prepared",
    "RECON_DIR",
    "RESUME_FILE",
    "Rate",
    "Run",
    "RunFolder",
    "RunSession",
    "fit_run",
    "load",
    "new_run_folder",
    "open_checkpoint",
    "prepare",
    "read_state",
    "save_checkpoint",
    "verify",
    "write_run_plots",
]
