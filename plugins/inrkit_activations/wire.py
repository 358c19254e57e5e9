"""WIRE (Saragadam et al., 2023): the complex Gabor wavelet ``exp(i * omega * z - |s * z|^2)``.

As the reference code: the first layer has real weights (it takes real coordinates), every later
layer complex weights; the hidden width is the requested width divided by sqrt(2), so that with
a complex weight counted as two real parameters the model stays about the size of a real one;
the output is the real part of the last (complex, linear) layer. Initialisation is PyTorch's
default, ``U(±1/sqrt(fan_in))``, for the real and the imaginary parts alike.
"""

from __future__ import annotations

import math

import pydantic
import torch

import inrkit
from inrkit.interfaces import Activation, LayerDef, LayerPosition, PluginOptions


class Wire(Activation):
    name = "wire"
    default_lr = 5e-3
    is_complex = True

    class Options(PluginOptions):
        #: Frequency of the wavelet's oscillation.
        omega: float = pydantic.Field(20.0, gt=0)
        #: Width (spread) parameter of the Gaussian envelope.
        scale: float = pydantic.Field(10.0, gt=0)
        #: Envelope scale on layers shared by several items that also have layers of their own
        #: (MINR's hidden layers); ``None`` uses ``scale``.
        shared_scale: float | None = pydantic.Field(None, gt=0)
        #: Frequency on those shared layers; ``None`` uses ``omega``.
        shared_omega: float | None = pydantic.Field(None, gt=0)

    options: Options

    def activate(self, z: torch.Tensor, position: LayerPosition) -> torch.Tensor:
        omega, scale = self.options.omega, self.options.scale
        return torch.exp(1j * omega * z - (scale * z).abs().square())

    def activate_layer(self, z: torch.Tensor, layer: LayerDef) -> torch.Tensor:
        o = self.options
        omega = o.shared_omega if layer.shared and o.shared_omega is not None else o.omega
        scale = o.shared_scale if layer.shared and o.shared_scale is not None else o.scale
        return torch.exp(1j * omega * z - (scale * z).abs().square())

    def hidden_width(self, width: int) -> int:
        return max(1, int(width / math.sqrt(2)))


@inrkit.hookimpl
def inrkit_register_activations() -> list[type[Activation]]:
    return [Wire]
