"""A sinc activation for inrkit: sinc(omega * z) = sin(pi * omega * z) / (pi * omega * z).

An example third-party plugin: its own package, registered through the ``inrkit`` entry-point
group, tested with inrkit's contract kit.
"""

import math

import pydantic
import torch

import inrkit
from inrkit.interfaces import Activation, LayerPosition, PluginOptions


class Sinc(Activation):
    name = "sinc"  # what --activation and [activation] name = ... refer to
    default_lr = 5e-4  # used when the user gives no --lr

    class Options(PluginOptions):  # extra="forbid": unknown keys are errors
        omega: float = pydantic.Field(10.0, gt=0)

    options: Options  # the validated options, typed as this class's own

    def activate(self, z: torch.Tensor, position: LayerPosition) -> torch.Tensor:
        return torch.sinc(self.options.omega * z)

    def init_bounds(self, position: LayerPosition, fan_in: int) -> tuple[float, float]:
        # init_ draws weights and biases uniformly within these bounds; the contract kit checks them.
        # Weights are laid out (..., in_features, out_features): fan_in is weight.shape[-2].
        scale = 0.5 if position == "first" else 1.0
        return scale / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in)


@inrkit.hookimpl
def inrkit_register_activations() -> list[type[Activation]]:
    return [Sinc]
