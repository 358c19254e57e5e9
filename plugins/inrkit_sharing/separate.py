"""Separate INRs: one full MLP per item, nothing shared (the paper's "Separate SIRENs").

All N networks train at once as batched per-item layers, which is the same optimisation problem
as N independent fits (each item's loss only reaches its own weights).
"""

from __future__ import annotations

import inrkit
from inrkit.interfaces import Activation, ModelSpec, SharingStrategy
from inrkit.nn import MultiINR, mlp_layer_defs


class Separate(SharingStrategy):
    name = "separate"

    def build(self, activation: Activation, spec: ModelSpec) -> MultiINR:
        defs = mlp_layer_defs(spec, activation, [False] * (spec.layers - 2))
        return MultiINR(activation, spec, defs)


@inrkit.hookimpl
def inrkit_register_sharing_strategies() -> list[type[SharingStrategy]]:
    return [Separate]
