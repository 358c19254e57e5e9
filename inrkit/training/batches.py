"""Which items each training step draws when ``train.items_per_step`` is set.

Every process shuffles its own items once per epoch (seeded by the run's seed, the process's
rank and the epoch) and walks through that order ``K`` items at a time, so every item is drawn
exactly once per epoch; an epoch's last batch holds the remainder. Under torchrun the batch
size ``K`` is split across processes like the items are (:func:`~inrkit.training.distributed.partition`),
and each process draws from its own items.

The draw of step ``s`` is a pure function of the seed, the step and the sizes, so a resumed
run draws exactly the batches it would have drawn: the epoch order needs no saving beyond the
step count that snapshots already hold.
"""

from __future__ import annotations

import math

import numpy as np


class ItemBatches:
    """The items each process draws at each step.

    ``blocks`` are every process's items (contiguous model indices, as
    :func:`~inrkit.training.distributed.partition` splits them) and ``batches`` each process's share of the
    batch; ``rank`` is this process.
    """

    def __init__(self, blocks: list[list[int]], batches: list[int], seed: int, rank: int) -> None:
        for block, batch in zip(blocks, batches, strict=True):
            if not 1 <= batch <= len(block):
                raise ValueError(f"a batch of {batch} from {len(block)} item(s)")
        self.blocks, self.batches, self.seed, self.rank = blocks, batches, seed, rank
        self._orders: dict[int, tuple[int, np.ndarray]] = {}

    @staticmethod
    def steps_per_epoch(items: int, batch: int) -> int:
        return math.ceil(items / batch)

    def _order(self, rank: int, epoch: int) -> np.ndarray:
        """Process ``rank``'s item order in ``epoch``: a permutation of its block's positions."""
        cached = self._orders.get(rank)
        if cached is None or cached[0] != epoch:
            rng = np.random.default_rng([self.seed, rank, epoch])
            cached = (epoch, rng.permutation(len(self.blocks[rank])))
            self._orders[rank] = cached
        return cached[1]

    def draw(self, step: int, rank: int | None = None) -> np.ndarray:
        """Positions in process ``rank``'s block (default: this process's) trained at ``step`` (1-based)."""
        rank = self.rank if rank is None else rank
        items, batch = len(self.blocks[rank]), self.batches[rank]
        epoch, j = divmod(step - 1, self.steps_per_epoch(items, batch))
        return self._order(rank, epoch)[j * batch : (j + 1) * batch]

    def drawn_items(self, step: int) -> np.ndarray:
        """The model's indices of every item any process trains at ``step``."""
        return np.concatenate([np.asarray(block)[self.draw(step, r)] for r, block in enumerate(self.blocks)])
