"""The Python API: fit without the CLI, load a run folder, decode one item at any size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import inrkit
from inrkit.runs import checkpoint, layout
from inrkit.errors import CheckpointError, DataError

CONFIG = {"model": {"width": 32, "layers": 4}, "train": {"steps": 20, "lr": 1e-3}}
TINY = {"model": {"width": 16, "layers": 3}, "train": {"steps": 3}}


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
    path = trained.run_dir / layout.CHECKPOINT_FILE
    state = checkpoint.read_item_state(path, 3)
    assert set(state) == {k for k in trained.model.state_dict()}
    for key, value in trained.model.state_dict().items():
        expected = value[3:4] if key.startswith("items.") else value
        assert torch.equal(state[key], expected), key


def test_checkpoint_splits_items_without_copying_them(trained):
    # At 10^5 items a copy of every item's tensors was the run's memory peak (RESULTS.md).
    model = trained.model
    tensors = checkpoint.split_state(model)
    stacked = {key: value for key, value in model.state_dict().items() if key.startswith("items.")}
    assert stacked
    for key, value in stacked.items():
        rest = key[len("items."):]
        for i in range(model.n_items):
            piece = tensors[f"items.{i}.{rest}"]
            assert piece.untyped_storage().data_ptr() == value.untyped_storage().data_ptr(), key
            assert torch.equal(piece, value[i]), key


def test_broken_checkpoints_are_reported(trained, tmp_path: Path):
    path = trained.run_dir / layout.CHECKPOINT_FILE
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


def test_fit_accepts_a_single_path_string(image_dir: Path):
    assert len(inrkit.fit(TINY, data=str(image_dir), save=False).items) == 4


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


@pytest.mark.cuda
def test_fit_and_decode_on_cuda(image_dir: Path, tmp_path: Path):
    config = {"model": {"width": 64}, "train": {"steps": 60, "lr": 1e-3, "device": "cuda"}}
    result = inrkit.fit(config, data=[str(image_dir)], out=tmp_path / "gpu")
    assert result.metrics["device"].startswith("cuda")
    assert result.metrics["psnr_mean"] > result.metrics["history"][0]["psnr"] + 10
    cpu = inrkit.load(result.run_dir).decode(0)
    # The fit's reconstructions ran with TF32 products (the default on a card, 10-bit mantissa);
    # the CPU decode runs in float32. On an H200 they differed by up to 4e-4: a tenth of a grey level.
    np.testing.assert_allclose(cpu, result.reconstructions[0], atol=0.5 / 255)


def test_public_api_names_resolve():
    for name in inrkit.__all__:
        assert getattr(inrkit, name) is not None, name
