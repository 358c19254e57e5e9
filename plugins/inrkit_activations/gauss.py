"""Gaussian activation (Ramasinghe & Lucey, 2022): ``exp(-(s * (W x + b))^2)``.

PyTorch's default initialisation (``U(±1/sqrt(fan_in))`` for weights and biases), as the
reference code uses; ``s`` controls the bandwidth (10 to 30 for images).
"""

from __future__ import annotations

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

    options: Options

    def activate(self, z: torch.Tensor, position: LayerPosition) -> torch.Tensor:
        return torch.exp(-(self.options.scale * z).square())


@inrkit.hookimpl
def inrkit_register_activations() -> list[type[Activation]]:
    return [Gauss]
