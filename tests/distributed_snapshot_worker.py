"""Started by torchrun from test_distributed.py: train a block of items per process, keep snapshots.

Rank 0 saves the first snapshot and the final model to the path given as the only argument.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from test_distributed import _setup

from inrkit import distributed
from inrkit.train import PointSet


def main(out: str) -> None:
    ctx, _ = distributed.setup(torch.device("cpu"))
    assert ctx is not None and ctx.world_size == 2
    model, points, trainer = _setup()
    own = ctx.items_of(points.n_items)
    mine = PointSet(points.targets[own], [points.shapes[i] for i in own], torch.tensor(own), points.n_items)
    snaps: list[dict] = []
    trainer.fit(model, mine, on_checkpoint=lambda s: snaps.append(copy.deepcopy(s)), dist=ctx)
    if ctx.is_main:
        torch.save({"snapshot": snaps[0], "final": model.state_dict()}, out)


if __name__ == "__main__":
    main(sys.argv[1])
