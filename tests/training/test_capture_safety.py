"""A training step never waits for the device: no ``.item()``, no data-dependent shape.

A host synchronisation inside the step would stall every GPU step (and make it impossible to
capture as a CUDA graph). The step runs here on the CPU under a ``TorchDispatchMode`` that records
every operator that needs the host to see a tensor's value, so a sync added anywhere in the
models, the chunked step or the fused optimiser fails this test, card or no card.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import inrkit
from inrkit.training.points import PointSet
from inrkit.training.trainer import ChunkedStep

#: Operators whose result the host must wait for: a scalar read, or an output shape that depends
#: on the values.
HOST_SYNCS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "unique_dim", "is_nonzero", "equal"}


class HostSyncs(TorchDispatchMode):
    """Records every operator of :data:`HOST_SYNCS` that runs while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func.__name__.split(".")[0] in HOST_SYNCS:
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


SHAPES = [(12, 12), (12, 12), (12, 10)]


def _points() -> PointSet:
    rng = np.random.default_rng(0)
    return PointSet.from_arrays([rng.random((*s, 3), dtype=np.float32) for s in SHAPES])


@pytest.mark.parametrize("activation", ["siren", "finer", "gauss"])
@pytest.mark.parametrize("sharing", ["minr", "separate", "id", "grid"])
@pytest.mark.parametrize("plan", ["chunks", "equal", "item-blocks"])
def test_a_training_step_has_no_host_sync(activation: str, sharing: str, plan: str):
    points = _points()
    model = inrkit.create_model(activation, sharing, item_shapes=SHAPES, width=16, layers=4, seed=0)
    chunks = {
        "chunks": points.chunks(50),  # an item leaves the last chunk: gathered rows
        "equal": points.equal_chunks(points.chunks(50)),
        "item-blocks": points.item_block_chunks(200),
    }[plan]
    assert chunks
    optimizer = torch.optim.Adam(model.parameters(), lr=torch.tensor(1e-3), fused=True)
    step = ChunkedStep(model, points, chunks)
    model.training_step(step)
    optimizer.step()  # the first step creates the optimiser's state
    with HostSyncs() as watch:
        optimizer.zero_grad(set_to_none=True)
        per_item = model.training_step(step)
        optimizer.step()
    assert not watch.seen, f"the step waits for the device: {watch.seen}"
    assert per_item.shape == (len(SHAPES),)


def test_the_watch_sees_a_sync():
    """Guard against a watch that records nothing (the test above would pass vacuously)."""
    with HostSyncs() as watch:
        torch.ones(3).sum().item()
        torch.nonzero(torch.tensor([0, 1, 1]))
    assert len(watch.seen) == 2
