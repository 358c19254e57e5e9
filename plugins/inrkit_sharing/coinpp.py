"""COIN++ (Dupont et al., 2022): a shared base network modulated per item by a latent vector.

Each item ``i`` has a latent vector ``phi_i``; one shared linear map turns it into a shift for
every activated layer, ``act(W x + b + shift_l(phi_i))`` (shift modulations). The base network and
the linear map are meta-learned with MAML: every training step starts all latents at zero, takes
``inner_steps`` plain gradient steps of size ``inner_lr`` on them (each item on its own loss),
and the outer optimiser (the trainer's Adam) updates the shared weights through that inner loop
(second order, unless ``first_order``). Second order keeps every point's activations of all inner
steps in memory at once; first order works chunk by chunk like the other strategies. After training, the latents are fitted once more the same
way and stored: they are the only per-item parameters, ``latent_dim`` numbers per item.
"""

from __future__ import annotations

from typing import cast

import pydantic
import torch
from torch import nn

import inrkit
from inrkit.interfaces import (
    Activation,
    Forward,
    ModelCapabilities,
    ModelSpec,
    PluginOptions,
    SharingStrategy,
    TrainingStep,
)
from inrkit.nn import Linear, MultiINR, mlp_layer_defs


class LatentCodes(nn.Module):
    """One latent vector per item, set by the inner loop rather than by the outer optimiser."""

    def __init__(self, n_items: int, dim: int) -> None:
        super().__init__()
        self.codes = nn.Parameter(torch.zeros(n_items, dim), requires_grad=False)


class CoinppINR(MultiINR):
    """COIN++'s network: shared base layers shifted per item by a linear map of its latent."""

    #: Its forward pass and its meta-learning step are its own: no bf16 scoping, no item split.
    capabilities = ModelCapabilities(bf16=False, distributed=False)

    def __init__(self, activation: Activation, spec: ModelSpec, options: Coinpp.Options) -> None:
        defs = mlp_layer_defs(spec, activation, [True] * (spec.layers - 2), share_ends=True)
        super().__init__(activation, spec, defs)
        self.meta = options
        self.modulated = [d.name for d in defs if d.position != "last"]
        self.hidden = activation.hidden_width(spec.width)
        self.shared["modulation"] = Linear(options.latent_dim, len(self.modulated) * self.hidden)
        self.items["latent"] = LatentCodes(spec.n_items, options.latent_dim)

    def forward(
        self, coords: torch.Tensor, items: torch.Tensor | None = None, latents: torch.Tensor | None = None
    ) -> torch.Tensor:
        if latents is None:
            latents = self.latents.codes
        if items is not None:
            latents = latents.index_select(0, items)
        shifts = self.shared["modulation"](latents).view(latents.shape[0], len(self.modulated), self.hidden)
        x = self.activation.encode(self.map_coords(coords, items))
        k = 0
        for d in self.layer_defs:
            x = self.shared[d.name](x)
            if d.position != "last":
                x = self.activation.activate_layer(x + shifts[:, k].unsqueeze(1), d)
                k += 1
        return x.real if x.is_complex() else x

    @property
    def latents(self) -> LatentCodes:
        """The stored per-item latent codes (``items.latent``)."""
        return cast(LatentCodes, self.items["latent"])

    def _with(self, latents: torch.Tensor) -> Forward:
        """The forward pass with the given latents (rows indexed like the model's items)."""
        return lambda coords, items: self(coords, items, latents)

    def _latent_grad(self, step: TrainingStep, latents: torch.Tensor, create_graph: bool) -> torch.Tensor:
        if create_graph:  # second order: the whole inner step stays in the graph (memory ~ all points)
            (grad,) = torch.autograd.grad(step.losses(self._with(latents)).sum(), latents, create_graph=True)
            return grad
        grad = torch.zeros_like(latents)
        for loss in step.chunk_losses(self._with(latents)):  # first order: memory bounded by one chunk
            grad += torch.autograd.grad(loss, latents)[0]
        return grad

    def _inner_loop(self, step: TrainingStep, create_graph: bool) -> torch.Tensor:
        n = step.n_items
        latents = torch.zeros(n, self.meta.latent_dim, device=step.device, requires_grad=True)
        for _ in range(self.meta.inner_steps):
            grad = self._latent_grad(step, latents, create_graph)
            # The loss averages items; scaling by n gives each item a step on its own loss.
            latents = latents - self.meta.inner_lr * n * grad
            if not create_graph:
                latents = latents.detach().requires_grad_(True)
        return latents

    def training_step(self, step: TrainingStep) -> torch.Tensor:
        """MAML: fit the latents from zero in an inner loop, backpropagate through it."""
        latents = self._inner_loop(step, create_graph=not self.meta.first_order)
        if not self.meta.first_order:
            per_item = step.losses(self._with(latents))
            per_item.sum().backward()
            return per_item.detach()
        return step.accumulate(self._with(latents.detach()))

    def prepare_evaluation(self, step: TrainingStep) -> None:
        """Fit every item's latent with the inner loop and store it (the per-item parameters)."""
        latents = self._inner_loop(step, create_graph=False)
        with torch.no_grad():
            self.latents.codes.copy_(latents.detach())


class Coinpp(SharingStrategy):
    name = "coinpp"

    class Options(PluginOptions):
        #: Size of each item's latent vector (the only per-item parameters).
        latent_dim: int = pydantic.Field(64, gt=0)
        #: Inner-loop gradient steps on the latents, from zero.
        inner_steps: int = pydantic.Field(3, gt=0)
        #: Inner-loop learning rate (plain gradient descent).
        inner_lr: float = pydantic.Field(1e-2, gt=0)
        #: Drop the second-order terms of MAML (cheaper, usually a little worse).
        first_order: bool = False

    options: Options

    def build(self, activation: Activation, spec: ModelSpec) -> CoinppINR:
        return CoinppINR(activation, spec, self.options)


@inrkit.hookimpl
def inrkit_register_sharing_strategies() -> list[type[SharingStrategy]]:
    return [Coinpp]
