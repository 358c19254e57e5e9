"""FINER (Liu et al., 2024): variable-periodic ``sin(omega * (|z| + 1) * z)``, ``z = W x + b``.

The scale ``|z| + 1`` is computed without gradient, as the reference code does. Weights use
SIREN's initialisation; ``first_bias_scale`` k draws the first layer's bias from ``U(±k)``
(k of about 1 to 20 widens the represented spectrum), otherwise biases keep PyTorch's default.
``init_scale`` multiplies the weight bounds of every layer but the last, as for SIREN.
"""

from __future__ import annotations

import pydantic
import torch

import inrkit
from inrkit.inits import siren_bounds
from inrkit.interfaces import Activation, LayerDef, LayerPosition, PluginOptions, ScaledForm


class Finer(Activation):
    name = "finer"
    default_lr = 5e-4

    class Options(PluginOptions):
        #: Frequency factor omega_0.
        omega: float = pydantic.Field(30.0, gt=0)
        #: k of the first layer's bias ``U(±k)``; ``None`` keeps ``U(±1/sqrt(fan_in))``.
        first_bias_scale: float | None = pydantic.Field(None, gt=0)
        #: Weight scaling: the initial weight bounds of every layer but the last times this (1: SIREN's).
        init_scale: float = pydantic.Field(1.0, gt=0, le=100)

    options: Options

    def activate(self, z: torch.Tensor, position: LayerPosition) -> torch.Tensor:
        with torch.no_grad():
            scale = z.abs() + 1.0
        return torch.sin(self.options.omega * scale * z)

    def scaled_form(self, layer: LayerDef) -> ScaledForm:
        omega = self.options.omega

        def finer(u: torch.Tensor) -> torch.Tensor:  # u = omega * z, so |z| + 1 = |u| / omega + 1
            with torch.no_grad():
                scale = u.abs() / omega + 1.0
            return torch.sin(scale * u)

        return omega, finer

    def init_bounds(self, position: LayerPosition, fan_in: int) -> tuple[float, float]:
        weight, bias = siren_bounds(position, fan_in, self.options.omega, self.options.init_scale)
        if position == "first" and self.options.first_bias_scale is not None:
            bias = self.options.first_bias_scale
        return weight, bias


@inrkit.hookimpl
def inrkit_register_activations() -> list[type[Activation]]:
    return [Finer]
