"""The Python API: fit without the CLI, load a run folder, decode one item at any size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import inrkit
from inrkit import artifacts
from inrkit.errors import CheckpointError, DataError

CONFIG = {"model": {"width": 32, "layers": 4}, "train": {"steps": 20, "lr": 1e-3}}


@pytest.fixture
def trained(image_dir: Path, tmp_path: Path):
    return inrkit.fit(CONFIG, data=[str(image_dir)], out=tmp_path / "run")


def test_fit_without_saving_returns_model_and_metrics(image_dir: Path):
    result = inrkit.fit(CONFIG, data=[str(image_dir)], save=False)
    assert result.run_dir is None and result.model.n_items == 4
    assert len(result.reconstructions) == 4 and result.reconstructions[0].shape == (24, 24, 3)


def test_decode_at_native_size_reproduces_the_reconstruction(trained):
    run = inrkit.load(trained.run_dir)
    assert run.item_names == [f"img{i}" for i in range(4)]
    for i, name in enumerate(run.item_names):
        image = run.decode(name)
        np.testing.assert_allclose(image, trained.reconstructions[i], atol=1e-5)
    np.testing.assert_allclose(run.decode(2), trained.reconstructions[2], atol=1e-5)


def test_decode_at_other_sizes(trained):
    run = inrkit.load(trained.run_dir)
    assert run.decode("img1", scale=2).shape == (48, 48, 3)
    assert run.decode("img1", size=(10, 30)).shape == (10, 30, 3)
    up = run.decode("img1", scale=4)
    assert up.min() >= 0 and up.max() <= 1
    with pytest.raises(DataError, match="not in run"):
        run.decode("nope")


def test_checkpoint_layout_and_single_item_reads(trained):
    path = trained.run_dir / artifacts.CHECKPOINT_FILE
    state = artifacts.read_item_state(path, 3)
    assert set(state) == {k for k in trained.model.state_dict()}
    for key, value in trained.model.state_dict().items():
        expected = value[3:4] if key.startswith("items.") else value
        assert torch.equal(state[key], expected), key


def test_broken_checkpoints_are_reported(trained, tmp_path: Path):
    path = trained.run_dir / artifacts.CHECKPOINT_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        inrkit.load(trained.run_dir).decode(0)
    path.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        inrkit.load(trained.run_dir)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not written by inrkit"):
        inrkit.load(trained.run_dir)
    with pytest.raises(CheckpointError, match="run folder not found"):
        inrkit.load(tmp_path / "nowhere")


def test_mixed_sizes_weigh_items_equally(tmp_path: Path):
    from inrkit.points import PointSet

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
    from inrkit.points import PointSet

    rng = np.random.default_rng(1)
    points = PointSet.from_arrays([rng.random((9, 8, 3), dtype=np.float32), rng.random((4, 5, 3), dtype=np.float32)])
    chunks = points.chunks(16)
    # past item 1's end (20 points) item 0 alone gets chunks of 32 points: 32 rows, as before
    assert [(c.start, c.stop, None if i is None else i.tolist()) for c, i in chunks] == [
        (0, 16, None), (16, 32, None), (32, 64, [0]), (64, 72, [0])
    ]
    model = inrkit.create_model(item_shapes=[(9, 8), (4, 5)], width=8)

    def grads(chunk: int) -> list[torch.Tensor]:
        model.zero_grad()
        for sl, items in points.chunks(chunk):
            coords = points.chunk_coords(sl, items)
            points.loss(model(coords, items), sl, items).backward()
        return [p.grad.clone() for p in model.parameters()]

    for a, b in zip(grads(16), grads(points.points)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_history_has_per_item_psnr_consistent_with_the_mean(image_dir: Path):
    result = inrkit.fit(CONFIG, data=[str(image_dir)], save=False)
    for record in result.metrics["history"]:
        assert len(record["item_psnr"]) == 4
        mse = [10 ** (-p / 10) for p in record["item_psnr"]]
        assert abs(10 * np.log10(1 / (sum(mse) / 4)) - record["psnr"]) < 1e-4


def test_fit_items_of_different_sizes(tmp_path: Path):
    import imageio.v3 as iio
    from conftest import make_image

    iio.imwrite(tmp_path / "big.png", make_image(32, 32, seed=1))
    iio.imwrite(tmp_path / "small.png", make_image(12, 20, seed=2))
    config = {"model": {"width": 64}, "train": {"steps": 60, "lr": 1e-3}}
    result = inrkit.fit(config, data=[str(tmp_path / "big.png"), str(tmp_path / "small.png")], save=False)
    assert [r.shape for r in result.reconstructions] == [(32, 32, 3), (12, 20, 3)]
    first = result.metrics["history"][0]["psnr"]
    assert all(it["psnr"] > first + 8 for it in result.metrics["items"]), result.metrics["items"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_and_decode_on_cuda(image_dir: Path, tmp_path: Path):
    config = {"model": {"width": 64}, "train": {"steps": 60, "lr": 1e-3, "device": "cuda"}}
    result = inrkit.fit(config, data=[str(image_dir)], out=tmp_path / "gpu")
    assert result.metrics["device"].startswith("cuda")
    assert result.metrics["psnr_mean"] > result.metrics["history"][0]["psnr"] + 10
    cpu = inrkit.load(result.run_dir).decode(0)
    np.testing.assert_allclose(cpu, result.reconstructions[0], atol=1e-4)


def test_public_api_names_resolve():
    for name in inrkit.__all__:
        assert getattr(inrkit, name) is not None, name


def test_chunk_coordinates_equal_each_items_grid_without_storing_them():
    from inrkit.coords import grid
    from inrkit.points import PointSet

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
    from inrkit.nn import BatchedLinear
    from inrkit.points import PointSet
    from inrkit.train import ChunkedStep

    rng = np.random.default_rng(4)
    shapes = [(9, 8), (4, 5), (7, 7)]
    arrays = [rng.random((*s, 3), dtype=np.float32) for s in shapes]
    model = inrkit.create_model(item_shapes=shapes, width=8)
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
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    rest = PointSet.from_arrays([arrays[1]], item_ids=[1], loss_items=3)
    got_rest = grads(rest, 4)
    for a, b, c in zip(got_part, got_rest, want, strict=True):
        torch.testing.assert_close(a + b, c, rtol=1e-4, atol=1e-6)
