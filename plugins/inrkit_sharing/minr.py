"""MINR (the paper's method): share the intermediate layers across all items.

Per item: the first layer, an extra projection layer right after it (Eq. 2) and the last layer.
Shared: the hidden layers (layers 2 .. L-1 as the paper counts them, by default all of them).
Options reproduce the paper's Table III ablations: ``projection=false`` drops the projection
layers, ``shared_layers=[3, 4]`` keeps layer 2 per item ("w/o sharing 2nd layer").
"""

from __future__ import annotations

import pydantic

import inrkit
from inrkit.errors import ConfigError
from inrkit.interfaces import Activation, ModelSpec, PluginOptions, SharingStrategy
from inrkit.nn import MultiINR, mlp_layer_defs


class Minr(SharingStrategy):
    name = "minr"

    class Options(PluginOptions):
        #: Insert a per-item projection layer after the first layer.
        projection: bool = True
        #: Hidden layers to share, numbered as the paper does (2 .. layers-1); ``None``: all.
        shared_layers: list[int] | None = None

        @pydantic.field_validator("shared_layers")
        @classmethod
        def _unique(cls, value: list[int] | None) -> list[int] | None:
            if value is not None and len(set(value)) != len(value):
                raise ValueError("lists a layer more than once")
            return value

    options: Options

    def shared_flags(self, layers: int) -> list[bool]:
        """Per hidden layer (paper's layers 2 .. layers-1), whether it is shared."""
        hidden = list(range(2, layers))
        chosen = self.options.shared_layers
        if chosen is None:
            return [True] * len(hidden)
        bad = [k for k in chosen if k not in hidden]
        if bad:
            valid = f"{hidden[0]}..{hidden[-1]}" if hidden else "none"
            raise ConfigError(
                f"sharing.shared_layers: layer(s) {bad} do not exist; with {layers} layers the "
                f"hidden layers are {valid} (layer 1 is the first, layer {layers} the last)"
            )
        return [k in chosen for k in hidden]

    def build(self, activation: Activation, spec: ModelSpec) -> MultiINR:
        defs = mlp_layer_defs(spec, activation, self.shared_flags(spec.layers), projection=self.options.projection)
        return MultiINR(activation, spec, defs)


@inrkit.hookimpl
def inrkit_register_sharing_strategies() -> list[type[SharingStrategy]]:
    return [Minr]
