"""Point sets and chunking: equal item weights, chunk coordinates, rows gathered per run of chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from conftest import make_image

import inrkit
from inrkit.coords import grid
from inrkit.nn import BatchedLinear
from inrkit.training.points import PointSet
from inrkit.training.trainer import ChunkedStep


def test_mixed_sizes_weigh_items_equally(tmp_path: Path):
    rng = np.random.default_rng(0)
    arrays = [rng.random((6, 5, 3), dtype=np.float32), rng.random((3, 4, 3), dtype=np.float32)]
    points = PointSet.from_arrays(arrays)
    assert points.counts == [30, 12] and points.targets.shape == (2, 30, 3)
    pred = torch.from_numpy(rng.random((2, 30, 3), dtype=np.float32))
    chunked = sum(points.loss(pred[:, s : s + 7], slice(s, s + 7)) for s in range(0, 30, 7))
    per_item = [
        ((pred[i, :c] - (torch.from_numpy(a).reshape(c, 3) * 2 - 1)) ** 2).mean() for i, (a, c) in enumerate(zip(arrays, points.counts))
    ]
    torch.testing.assert_close(chunked, sum(per_item) / 2)


def test_chunks_skip_finished_items_without_changing_the_gradient():
    rng = np.random.default_rng(1)
    points = PointSet.from_arrays([rng.random((9, 8, 3), dtype=np.float32), rng.random((4, 5, 3), dtype=np.float32)])
    chunks = points.chunks(16)
    # past item 1's end (20 points) item 0 alone gets chunks of 32 points: 32 rows, as before
    assert [(c.start, c.stop, None if i is None else i.tolist()) for c, i in chunks] == [
        (0, 16, None), (16, 32, None), (32, 64, [0]), (64, 72, [0])
    ]
    model = inrkit.create_model(item_shapes=[(9, 8), (4, 5)], width=8, seed=0)  # tolerances see the rounding

    def grads(chunk: int) -> list[torch.Tensor]:
        model.zero_grad()
        for sl, items in points.chunks(chunk):
            coords = points.chunk_coords(sl, items)
            points.loss(model(coords, items), sl, items).backward()
        return [p.grad.clone() for p in model.parameters()]

    for a, b in zip(grads(16), grads(points.points)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # float32 sums in another order; a lost chunk is off by far more


def test_chunk_coordinates_equal_each_items_grid_without_storing_them():
    rng = np.random.default_rng(2)
    for shapes in ([(6, 5), (3, 4), (5, 7)], [(4, 4), (4, 4)], [(2, 3, 4), (3, 2, 2)]):
        points = PointSet.from_arrays([rng.random((*s, 3), dtype=np.float32) for s in shapes])
        assert not hasattr(points, "coords")  # only the targets are materialised
        for sl, items in points.chunks(5):
            rows = range(points.n_items) if items is None else items.tolist()
            got = points.chunk_coords(sl, items)
            for k, i in enumerate(rows):
                want = grid(shapes[i])[sl]
                assert torch.equal(got[k, : want.shape[0]], want)


def test_rows_of_per_item_layers_are_gathered_once_per_run_of_chunks():
    """Chunks past the smaller items' ends select the other rows once; gradients stay exact."""
    rng = np.random.default_rng(4)
    shapes = [(9, 8), (4, 5), (7, 7)]
    arrays = [rng.random((*s, 3), dtype=np.float32) for s in shapes]
    model = inrkit.create_model(item_shapes=shapes, width=8, seed=0)  # tolerances see the rounding
    gathers = []
    original = BatchedLinear.gathered

    def counting(self, items):  # type: ignore[no-untyped-def]
        gathers.append(items.tolist())
        return original(self, items)

    def grads(points: PointSet, chunk: int) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        ChunkedStep(model, points, points.chunks(chunk)).accumulate()
        return [p.grad.clone() for p in model.parameters()]

    full = PointSet.from_arrays(arrays)
    want = grads(full, full.points)
    BatchedLinear.gathered = counting
    try:
        got = grads(full, 4)
        # two runs of partial chunks ([0, 2] from point 20, [0] from 49), one gather per per-item layer each
        assert gathers == [[0, 2]] * 3 + [[0]] * 3
        # a rank's share: rows are items 2 and 0 of the model, the loss still averages all 3 items
        gathers.clear()
        part = PointSet.from_arrays([arrays[2], arrays[0]], item_ids=[2, 0], loss_items=3)
        got_part = grads(part, 4)
        assert gathers[:3] == [[2, 0]] * 3
    finally:
        BatchedLinear.gathered = original
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # float32 sums in another order; a lost chunk is off by far more
    rest = PointSet.from_arrays([arrays[1]], item_ids=[1], loss_items=3)
    got_rest = grads(rest, 4)
    for a, b, c in zip(got_part, got_rest, want, strict=True):
        torch.testing.assert_close(a + b, c, rtol=1e-4, atol=1e-6)


def _float_targets(arrays: list[np.ndarray]) -> PointSet:
    """The same set with float32 targets, as before integer codes existed."""
    counts = [int(np.prod(a.shape[:-1])) for a in arrays]
    targets = torch.zeros(len(arrays), max(counts), arrays[0].shape[-1])
    for i, a in enumerate(arrays):
        targets[i, : counts[i]] = (torch.from_numpy(a) * 2.0 - 1.0).reshape(-1, a.shape[-1])
    return PointSet(targets, [a.shape[:-1] for a in arrays])


def test_8_and_16_bit_images_are_stored_as_codes_and_give_the_same_targets_bit_for_bit():
    rng = np.random.default_rng(0)
    for scale, dtype, nbytes in ((255, np.uint8, 1), (65535, np.uint16, 2)):
        raw = [rng.integers(0, scale + 1, size=s, dtype=np.int64).astype(dtype) for s in [(6, 5, 3), (4, 7, 3)]]
        raw[0][0, 0], raw[0][0, 1] = 0, scale  # both ends
        arrays = [r.astype(np.float32) / scale for r in raw]  # as images load
        points = PointSet.from_arrays(arrays)
        assert points.codes == scale and points.targets.element_size() == nbytes
        reference = _float_targets(arrays)
        whole = slice(0, points.points)
        got, want = points.chunk_targets(whole), reference.chunk_targets(whole)
        for i, count in enumerate(points.counts):  # padding differs (it weighs zero in the loss)
            assert torch.equal(got[i, :count], want[i, :count])
        rows = torch.tensor([1])
        assert torch.equal(points.chunk_targets(slice(2, 9), rows), reference.chunk_targets(slice(2, 9), rows))
        assert torch.equal(points.subset(rows, 1).chunk_targets(slice(0, 28)), reference.subset(rows, 1).chunk_targets(slice(0, 28)))


def test_other_values_stay_float32():
    smooth = [np.linspace(0, 1, 30, dtype=np.float32).reshape(5, 2, 3)]  # not k / 255
    assert PointSet.from_arrays(smooth).codes is None and PointSet.from_arrays(smooth).targets.dtype == torch.float32
    assert PointSet.from_arrays([np.full((2, 2, 3), 2 / 255, dtype=np.float64)]).codes is None  # not float32


def test_a_fit_on_codes_equals_a_fit_on_float_targets():
    arrays = [np.asarray(make_image(12, 10, seed=i), dtype=np.float32) / 255 for i in range(3)]
    results = []
    for points in (PointSet.from_arrays(arrays), _float_targets(arrays)):
        model = inrkit.create_model(item_shapes=[(12, 10)] * 3, width=16, layers=3, seed=0)
        inrkit.Trainer(steps=5, device="cpu", chunk_points=40).fit(model, points)
        results.append(model.state_dict())
    assert PointSet.from_arrays(arrays).codes == 255
    for key, value in results[0].items():
        assert torch.equal(value, results[1][key]), key
