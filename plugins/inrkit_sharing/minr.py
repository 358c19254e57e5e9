"""MINR (the paper's method): share the intermediate layers across all items.

Per item: the first layer, an extra projection layer right after it (Eq. 2) and the last layer.
Shared: the hidden layers (layers 2 .. L-1 as the paper counts them, by default all of them).
Options reproduce the paper's Table III ablations: ``projection=false`` drops the projection
layers, ``shared_layers=[3, 4]`` keeps layer 2 per item ("w/o sharing 2nd layer").
Beyond the paper, ``projection="lowrank"`` makes each item's projection ``U_i V_i + b_i`` of
rank ``rank`` (the preset ``minr-lowrank``), and ``projection="lora"`` shares the projection
and gives each item a rank-``rank`` delta ``W + U_i V_i``, ``b + b_i`` (the preset
``minr-lora``): the full projection is 97.7% of an item's parameters at width 256.
"""

from __future__ import annotations

from typing import Literal

import pydantic

import inrkit
from inrkit.errors import ConfigError
from inrkit.interfaces import Activation, ModelSpec, PluginOptions, SharingStrategy
from inrkit.nn import MultiINR, mlp_layer_defs

#: The forms of the per-item projection layer.
Projection = Literal["full", "lowrank", "lora", "none"]


class Minr(SharingStrategy):
    name = "minr"

    class Options(PluginOptions):
        #: The per-item projection layer after the first layer: ``full`` (``true``, the paper's),
        #: ``lowrank`` (each item's weight ``U_i V_i`` of rank ``rank``), ``lora`` (a shared
        #: weight plus each item's rank-``rank`` delta) or ``none`` (``false``).
        projection: Projection = "full"
        #: The rank of a ``lowrank`` or ``lora`` projection (ignored otherwise). ``None``: a
        #: sixteenth of the width for ``lora`` (16 at width 256), a quarter for ``lowrank``,
        #: whose items see only ``rank`` features past the projection (a bottleneck: at width 32,
        #: rank 2 gains 2 dB in 100 steps, rank 8 4.4 dB, the full projection 7.1 dB).
        rank: int | None = pydantic.Field(default=None, ge=1)
        #: Hidden layers to share, numbered as the paper does (2 .. layers-1); ``None``: all.
        shared_layers: list[int] | None = None

        @pydantic.field_validator("projection", mode="before")
        @classmethod
        def _paper_spelling(cls, value: object) -> object:
            """``true``/``false`` (the paper's two forms, and earlier configs) as ``full``/``none``."""
            if isinstance(value, bool):
                return "full" if value else "none"
            return value

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
        form = self.options.projection
        rank = None
        if form in ("lowrank", "lora"):
            width = activation.hidden_width(spec.width)
            rank = self.options.rank or max(1, width // (16 if form == "lora" else 4))
            # An explicit rank that saves nothing is a mistake; the default at a tiny width
            # (a budget search trying width 2) is rank 1, whatever it costs.
            if self.options.rank is not None and rank * 2 * width >= width * width:
                raise ConfigError(
                    f"sharing.rank={rank}: a rank-{rank} projection of width {width} holds {rank * 2 * width:,} "
                    f"weights, no fewer than the full projection's {width * width:,}; use a rank below "
                    f"{max(width // 2, 1)} or sharing.projection=full"
                )
        defs = mlp_layer_defs(
            spec, activation, self.shared_flags(spec.layers), projection=form != "none",
            projection_rank=rank, projection_shared=form == "lora",
        )
        return MultiINR(activation, spec, defs)


class MinrLowRank(Minr):
    """MINR with a low-rank per-item projection (``projection="lowrank"``)."""

    name = "minr-lowrank"

    class Options(Minr.Options):
        projection: Projection = "lowrank"

    options: Options


class MinrLora(Minr):
    """MINR with a shared projection and per-item low-rank deltas (``projection="lora"``)."""

    name = "minr-lora"

    class Options(Minr.Options):
        projection: Projection = "lora"

    options: Options


@inrkit.hookimpl
def inrkit_register_sharing_strategies() -> list[type[SharingStrategy]]:
    return [Minr, MinrLowRank, MinrLora]
