"""SIREN (Sitzmann et al., 2020): ``sin(omega * (W x + b))``.

Initialisation as the reference implementation: first layer ``W ~ U(±1/fan_in)``, hidden and last
layers ``W ~ U(±sqrt(6/fan_in)/omega)``, biases PyTorch's default ``U(±1/sqrt(fan_in))``.
``init_scale`` multiplies the weight bounds of every layer but the last (Yeom et al.'s weight
scaling, ICLR 2025; :func:`inrkit.inits.siren_bounds`); 1, the default, is the reference scheme.
"""

from __future__ import annotations

import pydantic
import torch

import inrkit
from inrkit.inits import siren_bounds
from inrkit.interfaces import Activation, LayerDef, LayerPosition, PluginOptions, ScaledForm


class Siren(Activation):
    name = "siren"
    default_lr = 5e-4

    class Options(PluginOptions):
        #: Frequency factor omega_0 of the hidden layers (and of the first, unless set apart).
        omega: float = pydantic.Field(30.0, gt=0)
        #: Frequency factor of the first layer; ``None`` uses ``omega``.
        first_omega: float | None = pydantic.Field(None, gt=0)
        #: Weight scaling: the initial weight bounds of every layer but the last times this (1: SIREN's).
        init_scale: float = pydantic.Field(1.0, gt=0, le=100)

    options: Options

    def _omega(self, position: LayerPosition) -> float:
        if position == "first" and self.options.first_omega is not None:
            return self.options.first_omega
        return self.options.omega

    def activate(self, z: torch.Tensor, position: LayerPosition) -> torch.Tensor:
        return torch.sin(self._omega(position) * z)

    def scaled_form(self, layer: LayerDef) -> ScaledForm:
        return self._omega(layer.position), torch.sin

    def init_bounds(self, position: LayerPosition, fan_in: int) -> tuple[float, float]:
        return siren_bounds(position, fan_in, self.options.omega, self.options.init_scale)


@inrkit.hookimpl
def inrkit_register_activations() -> list[type[Activation]]:
    return [Siren]
