"""Gaussian activation (Ramasinghe & Lucey, 2022): ``exp(-(s * (W x + b))^2)``.

PyTorch's default initialisation (``U(±1/sqrt(fan_in))`` for weights and biases), as the
reference code uses; ``s`` controls the bandwidth (10 to 30 for images).
"""

from __future__ import annotations

import math

import pydantic
import torch

import inrkit
from inrkit.interfaces import Activation, LayerPosition, PluginOptions


class Gauss(Activation):
    name = "gauss"
    default_lr = 5e-3

    class Options(PluginOptions):
        #: Scale ``s`` inside the Gaussian; larger fits finer detail.
        scale: float = pydantic.Field(10.0, gt=0)

    def activate(self, z: torch.Tensor, position: LayerPosition) -> torch.Tensor:
        return torch.exp(-(self.options.scale * z).square())

    def init_bounds(self, position: LayerPosition, fan_in: int) -> tuple[float, float]:
        bound = 1.0 / math.sqrt(fan_in)
        return bound, bound

    def init_(self, weight: torch.Tensor, bias: torch.Tensor, position: LayerPosition) -> None:
        weight_bound, bias_bound = self.init_bounds(position, weight.shape[-2])
        with torch.no_grad():
            weight.uniform_(-weight_bound, weight_bound)
            bias.uniform_(-bias_bound, bias_bound)


@inrkit.hookimpl
def inrkit_register_activations() -> list[type[Activation]]:
    return [Gauss]
