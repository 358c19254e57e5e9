"""Item mini-batches (``train.items_per_step``): the draws, lazy per-item Adam, and the trainer."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import inrkit
from conftest import make_image
from inrkit.training.batches import ItemBatches
from inrkit.errors import ConfigError
from inrkit.training.optim import LazyItemAdam
from inrkit.training.trainer import Trainer

SHAPES = [(12, 12), (10, 14), (12, 12), (9, 8), (12, 12), (11, 11)]


def _arrays() -> list[np.ndarray]:
    return [make_image(*s, seed=i).astype(np.float32) / 255 for i, s in enumerate(SHAPES)]


def _model() -> inrkit.INRModel:
    return inrkit.create_model(item_shapes=SHAPES, width=16, layers=4, seed=0)


# -- the draws --------------------------------------------------------------------------------


def test_every_item_is_drawn_once_per_epoch_in_a_seeded_order():
    batches = ItemBatches([list(range(10))], [4], seed=7, rank=0)
    assert ItemBatches.steps_per_epoch(10, 4) == 3
    for epoch in range(3):
        drawn = [batches.draw(epoch * 3 + j + 1) for j in range(3)]
        assert [len(d) for d in drawn] == [4, 4, 2]  # the epoch's last batch holds the remainder
        assert sorted(np.concatenate(drawn).tolist()) == list(range(10))
    assert not np.array_equal(batches.draw(1), batches.draw(4)), "each epoch is shuffled anew"
    again = ItemBatches([list(range(10))], [4], seed=7, rank=0)
    assert np.array_equal(again.draw(5), batches.draw(5)), "the draw is a function of the seed and step"
    assert not np.array_equal(ItemBatches([list(range(10))], [4], seed=8, rank=0).draw(1), batches.draw(1))


def test_processes_draw_from_their_own_blocks():
    blocks, shares = [[0, 1, 2], [3, 4]], [2, 1]
    batches = [ItemBatches(blocks, shares, seed=0, rank=r) for r in range(2)]
    for step in range(1, 7):
        for rank, b in enumerate(batches):
            assert set(np.asarray(blocks[rank])[b.draw(step)]) <= set(blocks[rank])
        everyone = batches[0].drawn_items(step)
        assert np.array_equal(everyone, batches[1].drawn_items(step)), "every process knows the whole step's items"
        assert len(everyone) == len(batches[0].draw(step)) + len(batches[1].draw(step))


# -- lazy Adam --------------------------------------------------------------------------------


def test_lazy_adam_drawing_every_row_is_adam():
    torch.manual_seed(0)
    rows_p, dense_p = torch.randn(4, 3, 2, requires_grad=True), torch.randn(5, requires_grad=True)
    ref = [rows_p.detach().clone().requires_grad_(), dense_p.detach().clone().requires_grad_()]
    lazy = LazyItemAdam([{"params": [dense_p]}, {"params": [rows_p], "item_rows": True}], lr=1e-2)
    adam = torch.optim.Adam(ref, lr=1e-2)
    for _ in range(5):
        grads = [torch.randn(4, 3, 2), torch.randn(5)]
        rows_p.grad, dense_p.grad = grads[0].clone(), grads[1].clone()
        ref[0].grad, ref[1].grad = grads[0].clone(), grads[1].clone()
        lazy.rows = torch.arange(4)
        lazy.step()
        adam.step()
    torch.testing.assert_close(rows_p, ref[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(dense_p, ref[1], rtol=0, atol=1e-6)


def test_lazy_adam_moves_only_drawn_rows_with_their_own_step_counts():
    torch.manual_seed(0)
    p = torch.randn(3, 4, requires_grad=True)
    start = p.detach().clone()
    lazy = LazyItemAdam([{"params": [p], "item_rows": True}], lr=1e-2)
    grads = [torch.randn(3, 4) for _ in range(3)]
    draws = [torch.tensor([0, 2]), torch.tensor([2]), torch.tensor([0])]
    for g, rows in zip(grads, draws, strict=True):
        p.grad = g.clone()
        lazy.rows = rows
        lazy.step()
    assert torch.equal(p[1], start[1]), "row 1 was never drawn: untouched, bit for bit"
    assert lazy.state[p]["item_step"].tolist() == [2.0, 0.0, 2.0]
    assert torch.equal(lazy.state[p]["exp_avg"][1], torch.zeros(4))
    # Row 0 saw gradients at steps 1 and 3: exactly two Adam steps on those two gradients.
    row = start[0].clone().requires_grad_()
    adam = torch.optim.Adam([row], lr=1e-2)
    for g in (grads[0][0], grads[2][0]):
        row.grad = g.clone()
        adam.step()
    torch.testing.assert_close(p[0], row, rtol=0, atol=1e-6)


def test_lazy_adam_handles_complex_rows():
    p = torch.randn(2, 3, dtype=torch.complex64, requires_grad=True)
    before = p.detach().clone()
    lazy = LazyItemAdam([{"params": [p], "item_rows": True}], lr=1e-2)
    p.grad = torch.randn(2, 3, dtype=torch.complex64)
    lazy.rows = torch.tensor([1])
    lazy.step()
    assert torch.equal(p[0], before[0]) and not torch.equal(p[1], before[1])


# -- the trainer ------------------------------------------------------------------------------


def _fit(steps: int = 12, **settings) -> tuple[inrkit.INRModel, Trainer, object]:
    model = _model()
    trainer = Trainer(steps=steps, chunk_points=64, device="cpu", lr=1e-3, **settings)
    result = trainer.fit(model, _arrays())
    return model, trainer, result


def test_a_batch_of_every_item_is_the_full_batch_bit_for_bit():
    full, _, r_full = _fit()
    same, _, r_same = _fit(items_per_step=len(SHAPES))
    for key, value in full.state_dict().items():
        assert torch.equal(same.state_dict()[key], value), key
    assert r_full.history == r_same.history


def test_mini_batches_train_every_item_and_log_each_items_latest_loss():
    model, _, result = _fit(steps=90, items_per_step=2)
    first, last = result.history[0]["item_psnr"], result.history[-1]["item_psnr"]
    assert len(first) == len(last) == len(SHAPES)
    assert all(b > a + 0.5 for a, b in zip(first, last, strict=True)), (first, last)
    assert np.isfinite(result.final_loss)


def test_mini_batch_resume_ends_exactly_like_an_uninterrupted_run():
    snaps: list[dict] = []
    model = _model()
    Trainer(steps=12, checkpoint_every=5, chunk_points=64, device="cpu", lr=1e-3, items_per_step=4).fit(
        model, _arrays(), on_snapshot=lambda s: snaps.append(copy.deepcopy(s))
    )
    assert snaps[0]["step"] == 5 and "item_step" in str(snaps[0]["optimizer"]["state"])
    resumed = _model()
    Trainer(steps=12, checkpoint_every=5, chunk_points=64, device="cpu", lr=1e-3, items_per_step=4).fit(
        resumed, _arrays(), resume_state=snaps[0]
    )
    for key, value in model.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_items_per_step_is_refused_for_strategies_with_their_own_loop():
    model = inrkit.create_model(sharing="coinpp", item_shapes=SHAPES, width=16, layers=4, seed=0)
    with pytest.raises(ConfigError, match="items_per_step"):
        Trainer(steps=2, device="cpu", items_per_step=2).fit(model, _arrays())
    with pytest.raises(ConfigError, match="items_per_step"):
        inrkit.as_config({"train": {"items_per_step": 0}})


def test_mini_batches_through_the_api_and_encode(tmp_path):
    import imageio.v3 as iio

    for i in range(5):
        iio.imwrite(tmp_path / f"img{i}.png", make_image(16, 16, seed=i))
    config = {"model": {"width": 16}, "train": {"steps": 20, "lr": 1e-3, "items_per_step": 2}}
    result = inrkit.fit(config, data=[str(tmp_path)], out=tmp_path / "run")
    assert result.metrics.psnr_mean > result.metrics.history[0].psnr
    assert inrkit.load(result.run_dir).config.train.items_per_step == 2
    encoded = inrkit.encode(result.run_dir, [str(tmp_path / "img0.png"), str(tmp_path / "img1.png"), str(tmp_path / "img2.png")],
                            out=tmp_path / "enc", train={"steps": 10, "items_per_step": 2})
    assert len(encoded.metrics.items) == 3
