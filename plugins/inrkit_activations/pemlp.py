"""PE-MLP: a ReLU MLP on positional (Fourier) encoded coordinates, the common NeRF-style baseline.

Each coordinate x in [-1, 1] becomes ``[x, sin(2^k pi x), cos(2^k pi x) for k < frequencies]``.
Layers use PyTorch's default initialisation, ``U(±1/sqrt(fan_in))``.
"""

from __future__ import annotations

import math

import pydantic
import torch

import inrkit
from inrkit.interfaces import Activation, LayerPosition, PluginOptions


class PeMlp(Activation):
    name = "pemlp"
    default_lr = 5e-3

    class Options(PluginOptions):
        #: Number of octaves L of the encoding (frequencies 2^0 .. 2^(L-1)).
        frequencies: int = pydantic.Field(10, ge=0, le=30)
        #: Keep the raw coordinates beside their encoding.
        include_input: bool = True

        @pydantic.model_validator(mode="after")
        def _not_empty(self) -> PeMlp.Options:
            if self.frequencies == 0 and not self.include_input:
                raise ValueError("frequencies=0 with include_input=false leaves the network no input")
            return self

    options: Options

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        parts = [coords] if self.options.include_input else []
        if self.options.frequencies:
            freqs = math.pi * 2.0 ** torch.arange(self.options.frequencies, dtype=coords.dtype, device=coords.device)
            angles = (coords.unsqueeze(-1) * freqs).flatten(-2)  # (..., d * L)
            parts += [torch.sin(angles), torch.cos(angles)]
        return torch.cat(parts, dim=-1)

    def encoded_dim(self, in_dim: int) -> int:
        return in_dim * (int(self.options.include_input) + 2 * self.options.frequencies)

    def activate(self, z: torch.Tensor, position: LayerPosition) -> torch.Tensor:
        return torch.relu(z)


@inrkit.hookimpl
def inrkit_register_activations() -> list[type[Activation]]:
    return [PeMlp]
