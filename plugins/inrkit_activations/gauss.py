"""Gaussian activation (Ramasinghe & Lucey, 2022): ``exp(-(s * (W x + b))^2)``.

PyTorch's default initialisation (``U(±1/sqrt(fan_in))`` for weights and biases), as the
reference code uses; ``s`` controls the bandwidth (10 to 30 for images).

Layers shared by several items (MINR's hidden layers) use ``shared_scale``, by default half of
``s``. A Gaussian unit responds only where its pre-activation is within about ``2.6 / s`` of zero,
so a network of Gaussians builds an image from localised bumps. A layer of one item places its
bumps for that item; a layer shared by every item would have to place them for all at once.
Measured with ``inrkit analyze activations`` and fits of Kodak kodim01-04 at 96 px (width 64,
300 steps, seed 0): with ``s = 10`` everywhere MINR reached 28.08 dB against 33.88 for separate
Gaussian INRs, its last shared layer kept a third of its units alive and an eighth of them dead
everywhere, and longer training widened the gap (32.33 against 40.33 at 1,200 steps); with
``shared_scale = 5`` MINR reached 32.30 (2.5: 32.24, 7.5: 30.56), and its projection layers are
worth 3.9 dB (28.43 without them). Separate fits have no shared layers and are unchanged; layers
of a single network for all items (the canvas and ID baselines) count as shared.
"""

from __future__ import annotations

import pydantic
import torch

import inrkit
from inrkit.interfaces import Activation, LayerDef, LayerPosition, PluginOptions, ScaledForm


class Gauss(Activation):
    name = "gauss"
    default_lr = 5e-3

    class Options(PluginOptions):
        #: Scale ``s`` inside the Gaussian; larger fits finer detail.
        scale: float = pydantic.Field(10.0, gt=0)
        #: Scale on hidden layers shared by several items (MINR's shared layers); ``None``: half
        #: of ``scale``. Broader Gaussians there are what lets one layer serve every item (see
        #: the module's docstring); layers of one item keep ``scale``.
        shared_scale: float | None = pydantic.Field(None, gt=0)

    options: Options

    def activate(self, z: torch.Tensor, position: LayerPosition) -> torch.Tensor:
        return gaussian(z, self.options.scale)

    def activate_layer(self, z: torch.Tensor, layer: LayerDef) -> torch.Tensor:
        return gaussian(z, self.layer_scale(layer))

    def scaled_form(self, layer: LayerDef) -> ScaledForm:
        return self.layer_scale(layer), _unit_gaussian

    def layer_scale(self, layer: LayerDef) -> float:
        """``s`` of a layer: ``shared_scale`` (default ``scale / 2``) on shared hidden layers."""
        o = self.options
        if layer.shared and layer.position == "hidden":
            return o.shared_scale if o.shared_scale is not None else o.scale / 2
        return o.scale


def gaussian(z: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.exp(-(scale * z).square())


def _unit_gaussian(u: torch.Tensor) -> torch.Tensor:
    return torch.exp(-u.square())


@inrkit.hookimpl
def inrkit_register_activations() -> list[type[Activation]]:
    return [Gauss]
