"""Uniform initialisation bounds shared by several activations.

An activation's :meth:`~inrkit.interfaces.Activation.init_bounds` returns ``(weight_bound,
bias_bound)`` for ``U(±bound)``; these are the two schemes the built-in backbones use, here so
that any plugin (a SIREN variant of a third party, FINER) can reuse them without importing
another plugin.
"""

from __future__ import annotations

import math
from typing import Literal

Position = Literal["first", "hidden", "last"]


def pytorch_default_bounds(fan_in: int) -> tuple[float, float]:
    """PyTorch's ``nn.Linear`` default: ``U(±1/sqrt(fan_in))`` for weight and bias."""
    bound = 1.0 / math.sqrt(fan_in)
    return bound, bound


def siren_bounds(position: Position, fan_in: int, omega: float, weight_scale: float = 1.0) -> tuple[float, float]:
    """SIREN's (Sitzmann et al., 2020) bounds: weights ``1/fan_in`` for the first layer and
    ``sqrt(6/fan_in)/omega`` after it; biases keep PyTorch's ``1/sqrt(fan_in)``.

    ``weight_scale`` is the weight scaling of Yeom, Lee and Lee ("Fast Training of Sinusoidal
    Neural Fields via Scaling Initialization", ICLR 2025): every weight bound except the last
    layer's is multiplied by it (the biases and the last layer keep SIREN's), which they find
    trains sinusoidal fields several times faster at a moderate factor; 1 is SIREN's scheme.
    """
    weight = 1.0 / fan_in if position == "first" else math.sqrt(6.0 / fan_in) / omega
    if position != "last":
        weight *= weight_scale
    return weight, 1.0 / math.sqrt(fan_in)
