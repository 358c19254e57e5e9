"""Tools: the environment report, the step benchmark, layer diagnostics, weight analysis.
"""

from inrkit.tools.analysis import analyze_weights, write_analysis
from inrkit.tools.bench import run_bench
from inrkit.tools.diagnostics import LayerStatistics, activation_report, layer_statistics, sample_coords
from inrkit.tools.doctor import format_report, gather

__all__ = [
    "LayerStatistics",
    "activation_report",
    "analyze_weights",
    "format_report",
    "gather",
    "layer_statistics",
    "run_bench",
    "sample_coords",
    "write_analysis",
]
