"""Started by torchrun from test_distributed.py: train a block of items per process, keep snapshots.

Rank 0 saves the first snapshot and the final model to the path given as the first argument; a
second argument sets ``train.items_per_step``.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from test_distributed import _setup

from inrkit.training import distributed


def main(out: str, items_per_step: int | None = None) -> None:
    group, _ = distributed.join(torch.device("cpu"))
    assert group.world_size == 2
    model, arrays, trainer = _setup(items_per_step)
    snaps: list[dict] = []
    # The trainer gives each process its block of the items.
    trainer.fit(model, arrays, on_snapshot=lambda s: snaps.append(copy.deepcopy(s)), group=group)
    if group.is_main:
        torch.save({"snapshot": snaps[0], "final": model.state_dict()}, out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
