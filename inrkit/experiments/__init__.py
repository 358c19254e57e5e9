"""Experiments: many fits of one base config (compare, sweep, front, rd), statistics, codec baselines.

Each runner is a function of the module of its name (``inrkit.experiments.compare.compare``,
``sweep.sweep``, ``front.front``, ``rd.rd``); the package exports what they share.
"""

from inrkit.experiments.baselines import CODECS, codec_point
from inrkit.experiments.rd import bd_delta, pareto
from inrkit.experiments.runner import FailedPoint, Point, PointResult, Variant
from inrkit.experiments.stats import Interval, paired_cell, paired_difference, t_interval

__all__ = [
    "CODECS",
    "FailedPoint",
    "Interval",
    "Point",
    "PointResult",
    "Variant",
    "bd_delta",
    "codec_point",
    "paired_cell",
    "paired_difference",
    "pareto",
    "t_interval",
]
