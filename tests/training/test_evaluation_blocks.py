"""Evaluation at scale (issue 13, item 4): items are scored a block at a time and their
reconstructions rendered on demand, so a collection's reconstructions are never all in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import inrkit
from inrkit.training import evaluate as evaluation
from inrkit.interfaces import Callback, FitContext, Item
from inrkit.runs.plots import shown_items
from inrkit.plugins import get_registry
from inrkit.results import Evaluation
from inrkit.training.trainer import eval_block_points

SMALL = {"model": {"width": 16, "layers": 3}, "train": {"steps": 4, "device": "cpu"}}


@given(st.lists(st.integers(1, 50), max_size=30), st.integers(1, 80))
def test_item_blocks_cover_the_items_in_order_within_the_budget(sizes: list[int], budget: int):
    blocks = evaluation.item_blocks(sizes, budget)
    assert [i for b in blocks for i in b] == list(range(len(sizes)))
    for block in blocks:
        assert len(block) == 1 or sum(sizes[i] for i in block) <= budget
    for a, b in zip(blocks, blocks[1:]):  # greedy: the next item would not have fitted
        assert sum(sizes[i] for i in a) + sizes[b.start] > budget


def _setup(n: int = 5):
    signal = get_registry().create("signal", "image")
    rng = np.random.default_rng(0)
    arrays = [rng.random((6 + k, 7, 3), dtype=np.float32) for k in range(n)]
    items = [Item(name=f"i{k}", data=a) for k, a in enumerate(arrays)]
    model = inrkit.create_model("siren", "minr", item_shapes=[a.shape[:2] for a in arrays], width=8, layers=3)
    return model, items, signal


def test_blocks_give_the_same_scores_and_reconstructions_as_one_block():
    model, items, signal = _setup()
    whole = evaluation.evaluate(model, items, signal, torch.device("cpu"))
    blocked = evaluation.evaluate(model, items, signal, torch.device("cpu"), block_points=40)
    assert len(blocked.reconstructions.blocks) == 5 and len(whole.reconstructions.blocks) == 1
    for a, b in zip(whole.items, blocked.items, strict=True):
        assert a.name == b.name and a.psnr == pytest.approx(b.psnr, abs=1e-5) and a.ssim == pytest.approx(b.ssim, abs=1e-6)
    for a, b in zip(whole.reconstructions, blocked.reconstructions, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-6)
    picked = evaluation.select(blocked.reconstructions, [4, 0])
    np.testing.assert_allclose(picked[0], whole.reconstructions[4], atol=1e-6)
    assert blocked.reconstructions[-1].shape == items[-1].data.shape and len(blocked.reconstructions[1:3]) == 2
    with pytest.raises(IndexError):
        blocked.reconstructions[5]


def test_reading_in_order_renders_each_block_once_and_holds_one(monkeypatch: pytest.MonkeyPatch):
    model, items, signal = _setup()
    rendered: list[int] = []
    real = evaluation.render_items

    def counting(model, targets, device, indices=None, n_items=None):  # type: ignore[no-untyped-def]
        rendered.append(len(targets))
        return real(model, targets, device, indices, n_items)

    monkeypatch.setattr(evaluation, "render_items", counting)
    result = evaluation.evaluate(model, items, signal, torch.device("cpu"), block_points=120)  # items of 42, 49, 56, 63, 70 points: 2, 2, 1 a block
    assert rendered == [2, 2, 1]  # scoring: each block once
    rendered.clear()
    recons = result.reconstructions
    arrays = list(recons)
    assert rendered == [2, 2, 1]  # each block once more: one block is held at a time
    assert len(arrays) == 5 and recons._cached is not None and len(recons._cached[1]) == 1
    rendered.clear()
    small = evaluation.evaluate(model, items, signal, torch.device("cpu"))
    assert rendered == [5] and len(list(small.reconstructions)) == 5 and rendered == [5]  # one block: rendered once


def test_during_training_reconstructions_are_read_inside_on_evaluate_only(image_dir: Path):
    class Keeper(Callback):
        name = "keeper"

        def __init__(self) -> None:
            super().__init__()
            self.kept: list[Evaluation] = []
            self.shapes: list[tuple[int, ...]] = []

        def on_evaluate(self, context: FitContext, evaluation: Evaluation) -> None:
            self.shapes.append(evaluation.reconstructions[0].shape)
            self.kept.append(evaluation)

    keeper = Keeper()
    result = inrkit.fit({**SMALL, "train": {**SMALL["train"], "eval_every": 2}}, data=[str(image_dir)], save=False, callbacks=[keeper])
    mid, final = keeper.kept
    assert len(keeper.shapes) == 2 and not mid.final and final.final
    with pytest.raises(RuntimeError, match="read them inside on_evaluate"):
        mid.reconstructions[0]
    assert final.reconstructions[0].shape == keeper.shapes[1]  # the final one stays readable
    assert len(result.reconstructions) == len(result.items)


def test_figures_show_a_spread_sample_of_a_large_collection():
    assert shown_items(5) == [0, 1, 2, 3, 4]
    sample = shown_items(10_000)
    assert len(sample) == 12 and sample[0] == 0 and sample[-1] == 9_999 and sample == sorted(set(sample))


def test_the_memory_estimate_counts_one_block_of_renders():
    assert eval_block_points([(32, 32)] * 10) == 10 * 1024
    assert eval_block_points([(32, 32)] * 100_000) == 1 << 20
    assert eval_block_points([(2048, 2048), (8, 8)]) == 2048 * 2048
