"""One network over a canvas of all items: the paper's "SIREN (Row/Column/Grid)" baselines.

The items are laid out on a canvas of equal cells, each cell as large as the largest item (its
height x its width); an item sits in the top-left corner of its cell, and canvas pixels no item
covers are simply not trained. Each item's pixel-centre coordinates are mapped affinely onto its
pixels of the canvas, so training is exactly fitting the concatenated image with one network,
and decoding an item at another resolution samples the same region more finely.

- ``row``: the items side by side, left to right (one row of N cells);
- ``column``: the items stacked top to bottom (one column of N cells);
- ``grid``: ``ceil(sqrt(N))`` columns, filled row by row.
"""

from __future__ import annotations

import math

import torch

import inrkit
from inrkit.errors import ConfigError
from inrkit.interfaces import Activation, ModelSpec, SharingStrategy
from inrkit.nn import MultiINR, mlp_layer_defs


def canvas_layout(n: int, arrangement: str) -> tuple[int, int]:
    """``(rows, cols)`` of cells for ``n`` items."""
    if arrangement == "row":
        return 1, n
    if arrangement == "column":
        return n, 1
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


class CanvasINR(MultiINR):
    """A fully shared MLP whose coordinates are mapped into each item's region of a canvas."""

    coord_scale: torch.Tensor
    coord_offset: torch.Tensor

    def __init__(self, activation: Activation, spec: ModelSpec, arrangement: str) -> None:
        layers = spec.layers
        super().__init__(activation, spec, mlp_layer_defs(spec, activation, [True] * (layers - 2), share_ends=True))
        shapes = spec.run_item_shapes or spec.item_shapes
        if any(len(s) != 2 for s in shapes):
            raise ConfigError(f"sharing {arrangement!r} lays out 2-D items on a canvas; got shapes {list(shapes)}")
        cell_h = max(s[0] for s in shapes)
        cell_w = max(s[1] for s in shapes)
        rows, cols = canvas_layout(len(shapes), arrangement)
        canvas = (rows * cell_h, cols * cell_w)
        scale, offset = [], []
        for index in spec.item_indices or ():
            r, c = divmod(index, cols)
            h, w = shapes[index]
            # canvas = local * size/canvas + (2 * cell_start + size)/canvas - 1, per axis
            scale.append([h / canvas[0], w / canvas[1]])
            offset.append([(2 * r * cell_h + h) / canvas[0] - 1.0, (2 * c * cell_w + w) / canvas[1] - 1.0])
        self.canvas_shape = canvas
        self.register_buffer("coord_scale", torch.tensor(scale, dtype=torch.float32), persistent=False)
        self.register_buffer("coord_offset", torch.tensor(offset, dtype=torch.float32), persistent=False)

    def map_coords(self, coords: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        scale, offset = self.coord_scale, self.coord_offset
        if items is not None:
            scale, offset = scale.index_select(0, items), offset.index_select(0, items)
        return coords * scale.unsqueeze(1) + offset.unsqueeze(1)


class _Canvas(SharingStrategy):
    arrangement = "grid"

    def build(self, activation: Activation, spec: ModelSpec) -> MultiINR:
        return CanvasINR(activation, spec, self.arrangement)


class Row(_Canvas):
    name = "row"
    arrangement = "row"


class Column(_Canvas):
    name = "column"
    arrangement = "column"


class Grid(_Canvas):
    name = "grid"
    arrangement = "grid"


@inrkit.hookimpl
def inrkit_register_sharing_strategies() -> list[type[SharingStrategy]]:
    return [Row, Column, Grid]
