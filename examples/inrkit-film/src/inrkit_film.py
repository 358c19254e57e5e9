"""FiLM sharing: one network for all items, modulated per item by feature-wise scales and shifts.

Every linear layer (first, hidden and last) is shared. Each item owns, for every activated layer
``k``, a scale ``gamma[i, k]`` and a shift ``beta[i, k]`` of the hidden width, applied to the
pre-activation: ``act(gamma_i * (W x + b) + beta_i)``. This is FiLM (Perez et al., 2018,
"FiLM: Visual Reasoning with a General Conditioning Layer") as functa and COIN++ (Dupont et al.,
2022) use it to turn one shared INR into many: an item is its modulations, a few numbers per
layer. Here the modulations are plain per-item parameters fitted with the network (no
meta-learning), so the model trains with inrkit's default loop and splits across processes.

``gamma`` starts at 1 and ``beta`` at 0: an untrained model is the plain shared network.
``shift_only=True`` keeps only ``beta`` (functa's shift modulations, half the per-item numbers).
"""

from __future__ import annotations

import torch
from torch import nn

import inrkit
from inrkit.interfaces import Activation, LayerDef, ModelSpec, PluginOptions, SharingStrategy
from inrkit.nn import MultiINR, mlp_layer_defs


class Modulations(nn.Module):
    """Per-item FiLM parameters, ``(N, layers, width)``: one row per item, as ``items.*`` requires."""

    gamma: nn.Parameter | None

    def __init__(self, n_items: int, n_layers: int, width: int, shift_only: bool = False) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(n_items, n_layers, width))
        # A missing gamma is a fixed scale of 1, not a parameter: nothing to store or count.
        self.gamma = None if shift_only else nn.Parameter(torch.ones(n_items, n_layers, width))

    def rows(self, items: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(gamma, beta)`` of the items ``items`` (all, in order, for ``None``)."""
        if items is None:
            return self.gamma, self.beta
        gamma = None if self.gamma is None else self.gamma.index_select(0, items)
        return gamma, self.beta.index_select(0, items)


class FilmINR(MultiINR):
    """A fully shared :class:`~inrkit.nn.MultiINR` plus per-item modulations under ``items.film``.

    Only :meth:`modulate` is its own: MultiINR's forward pass calls it on every activated layer's
    pre-activation, so the default capabilities hold (under autocast only hidden products run in
    bf16, the modulations apply in float32; each item's modulations get gradient only from its
    own points).
    """

    def __init__(self, activation: Activation, spec: ModelSpec, shift_only: bool = False) -> None:
        defs = mlp_layer_defs(spec, activation, [True] * (spec.layers - 2), share_ends=True)
        super().__init__(activation, spec, defs)
        activated = [d for d in defs if d.position != "last"]
        self.slot = {d.name: k for k, d in enumerate(activated)}
        self.items["film"] = Modulations(spec.n_items, len(activated), activated[0].out_features, shift_only)

    def modulate(self, layer: LayerDef, z: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        modulations = self.items["film"]
        assert isinstance(modulations, Modulations)
        gamma, beta = modulations.rows(items)
        k = self.slot[layer.name]
        if gamma is not None:
            z = z * gamma[:, k].unsqueeze(1)
        return z + beta[:, k].unsqueeze(1)


class Film(SharingStrategy):
    name = "film"

    class Options(PluginOptions):
        #: Modulate by shifts only (``beta``); ``False`` also fits a per-item scale ``gamma``.
        shift_only: bool = False

    options: Options

    def build(self, activation: Activation, spec: ModelSpec) -> FilmINR:
        return FilmINR(activation, spec, shift_only=self.options.shift_only)


@inrkit.hookimpl
def inrkit_register_sharing_strategies() -> list[type[SharingStrategy]]:
    return [Film]
