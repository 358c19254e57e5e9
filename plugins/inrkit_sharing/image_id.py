"""One network for all items, told which item by an extra input: the paper's "SIREN (ID)".

The item index ``i`` of ``N`` is appended to the coordinates as ``2 i / (N - 1) - 1`` (0 for a
single item), so the items are slices of one 3-D signal in [-1, 1]^3.
"""

from __future__ import annotations

import torch

import inrkit
from inrkit.interfaces import Activation, ModelSpec, SharingStrategy
from inrkit.nn import MultiINR, mlp_layer_defs


class ItemIdINR(MultiINR):
    item_ids: torch.Tensor
    def __init__(self, activation: Activation, spec: ModelSpec) -> None:
        defs = mlp_layer_defs(spec, activation, [True] * (spec.layers - 2), in_dim=spec.in_dim + 1, share_ends=True)
        super().__init__(activation, spec, defs)
        n = spec.total_items or 1
        ids = [2.0 * i / (n - 1) - 1.0 if n > 1 else 0.0 for i in spec.item_indices or ()]
        self.register_buffer("item_ids", torch.tensor(ids, dtype=torch.float32), persistent=False)

    def map_coords(self, coords: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        ids = self.item_ids if items is None else self.item_ids.index_select(0, items)
        column = ids.view(-1, 1, 1).expand(coords.shape[0], coords.shape[1], 1)
        return torch.cat([coords, column.to(coords.dtype)], dim=-1)


class ItemId(SharingStrategy):
    name = "id"

    def build(self, activation: Activation, spec: ModelSpec) -> MultiINR:
        return ItemIdINR(activation, spec)


@inrkit.hookimpl
def inrkit_register_sharing_strategies() -> list[type[SharingStrategy]]:
    return [ItemId]
