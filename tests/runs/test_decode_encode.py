"""Decoding items at any resolution from a checkpoint, and encoding new items into a trained run."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import safetensors
import torch
from click.testing import CliRunner
from conftest import make_image
from safetensors.torch import load_file

import inrkit
from inrkit.cli import main

CONFIG = {"model": {"width": 64, "layers": 4}, "train": {"steps": 30, "lr": 1e-3}}
TINY = {"model": {"width": 16, "layers": 3}, "train": {"steps": 3}}


@pytest.fixture
def trained(image_dir: Path, tmp_path: Path):
    return inrkit.fit(CONFIG, data=[str(image_dir)], out=tmp_path / "run")


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_decode_cli_at_1x_2x_4x(trained, tmp_path: Path):
    run = trained.run_dir
    r = cli("decode", run, "--item", "img2", "-o", tmp_path / "one.png")
    assert r.exit_code == 0, r.output
    own = iio.imread(run / "recon" / "img2.png").astype(int)
    assert np.abs(iio.imread(tmp_path / "one.png").astype(int) - own).max() <= 1  # float rounding only
    for scale, side in (("2", 48), ("4", 96)):
        assert cli("decode", run, "--item", "1", "--scale", scale, "-o", tmp_path / f"x{scale}.png").exit_code == 0
        assert iio.imread(tmp_path / f"x{scale}.png").shape == (side, side, 3)
    assert cli("decode", run, "--all", "--size", "40x30", "-o", tmp_path / "all").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [f"img{i}.png" for i in range(4)]
    assert iio.imread(tmp_path / "all" / "img0.png").shape == (30, 40, 3)


def test_decode_reads_only_shared_and_that_items_tensors(trained, monkeypatch):
    read: list[str] = []
    real_open = safetensors.safe_open

    class Recording:
        def __init__(self, *args, **kwargs):
            self._inner = real_open(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self._inner, name)

        def get_tensor(self, key):
            read.append(key)
            return self._inner.get_tensor(key)

    monkeypatch.setattr(safetensors, "safe_open", Recording)
    image = inrkit.load(trained.run_dir).decode("img2", scale=4)
    assert image.shape == (96, 96, 3)
    assert read and all(k.startswith("shared.") or k.startswith("items.2.") for k in read)
    assert {k for k in read if k.startswith("items.")} == {
        f"items.2.{layer}.{p}" for layer in ("first", "projection", "last") for p in ("weight", "bias")
    }


def test_decode_bad_input(trained, tmp_path: Path):
    for args, message in [
        (["--item", "nope"], "is not in run"),
        (["--item", "9"], "is not in run"),
        ([], "exactly one of --item"),
        (["--item", "0", "--scale", "0"], "scale must be a positive"),
        (["--item", "0", "--size", "0x4"], "must be positive"),
    ]:
        r = cli("decode", trained.run_dir, *args, "-o", tmp_path / "o.png")
        assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output, r.output
    other = tmp_path / "other"
    other.mkdir()
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(other / "checkpoint.safetensors"))
    r = cli("decode", other, "--item", "0", "-o", tmp_path / "o.png")
    assert r.exit_code != 0 and "not written by inrkit" in r.output
    ckpt = trained.run_dir / "checkpoint.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    r = cli("decode", trained.run_dir, "--item", "0", "-o", tmp_path / "o.png")
    assert r.exit_code != 0 and "truncated" in r.output and "Traceback" not in r.output


def test_decode_never_overwrites_without_force(image_dir: Path, tmp_path: Path):
    run = inrkit.fit(TINY, data=[str(image_dir)], out=tmp_path / "run").run_dir
    ckpt = run / "checkpoint.safetensors"
    before = ckpt.read_bytes()
    for target, message in [(ckpt, "use an image file name"), (run, "is a folder"), (tmp_path / "x.txt", "use an image file name")]:
        r = cli("decode", run, "--item", "0", "-o", target)
        assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output, r.output
    assert ckpt.read_bytes() == before
    r = cli("decode", run, "--all", "-o", run / "recon")
    assert r.exit_code != 0 and "already exist" in r.output
    assert cli("decode", run, "--all", "-o", run / "recon", "--force").exit_code == 0
    assert cli("decode", run, "--item", "0", "-o", tmp_path / "a.jpg").exit_code == 0
    assert iio.imread(tmp_path / "a.jpg").shape == (24, 24, 3)


def test_encode_leaves_every_shared_tensor_unchanged(trained, image_dir: Path, tmp_path: Path):
    import imageio.v3 as iio
    from conftest import make_image

    new = tmp_path / "new"
    new.mkdir()
    for i in range(2):
        iio.imwrite(new / f"new{i}.png", make_image(20, 28, seed=10 + i))
    before = load_file(trained.run_dir / "checkpoint.safetensors")
    r = cli("encode", trained.run_dir, "--data", new, "--steps", "60", "--out", tmp_path / "enc", "--no-progress", "--json")
    assert r.exit_code == 0, r.output
    after = load_file(tmp_path / "enc" / "checkpoint.safetensors")
    shared = [k for k in before if k.startswith("shared.")]
    assert shared and all(torch.equal(before[k], after[k]) for k in shared)  # bit for bit
    untouched = load_file(trained.run_dir / "checkpoint.safetensors")
    assert untouched.keys() == before.keys() and all(torch.equal(before[k], untouched[k]) for k in before)
    assert {k.split(".")[1] for k in after if k.startswith("items.")} == {"0", "1"}
    import json

    metrics = json.loads((tmp_path / "enc" / "metrics.json").read_text())
    assert metrics["steps"] == 60 and metrics["seconds"] > 0 and metrics["encoded_from"] == str(trained.run_dir)
    assert metrics["psnr_mean"] > metrics["history"][0]["psnr"] + 3
    run = inrkit.load(tmp_path / "enc")
    assert run.item_names == ["new0", "new1"] and run.decode("new1").shape == (20, 28, 3)


@pytest.mark.parametrize("sharing, ok", [("separate", True), ("coinpp", True), ("row", False), ("id", False)])
def test_encode_per_strategy(image_dir: Path, tmp_path: Path, sharing: str, ok: bool):
    config = {"sharing": {"name": sharing}, "model": {"width": 16, "layers": 3}, "train": {"steps": 3}}
    base = inrkit.fit(config, data=[str(image_dir / "img0.png"), str(image_dir / "img1.png")], out=tmp_path / "base")
    r = cli("encode", base.run_dir, "--data", image_dir / "img3.png", "--steps", "3", "--out", tmp_path / "e", "--no-progress")
    if ok:
        assert r.exit_code == 0, r.output
    else:
        assert r.exit_code != 0 and "no per-item parameters" in r.output and "Traceback" not in r.output


def test_encode_mean_initialisation_starts_from_the_runs_average(trained, image_dir: Path):
    from inrkit.runs import checkpoint

    means = checkpoint.read_item_means(trained.run_dir / "checkpoint.safetensors", 4)
    result = inrkit.encode(trained.run_dir, [str(image_dir / "img0.png")], save=False, train={"steps": 1, "lr": 1e-12}, init="mean")
    for key, param in result.model.items.named_parameters():
        torch.testing.assert_close(param[0], means[f"items.{key}"], rtol=1e-5, atol=1e-6)  # lr ~0: unchanged
    with pytest.raises(inrkit.errors.ConfigError, match="init must be"):
        inrkit.encode(trained.run_dir, [str(image_dir / "img0.png")], save=False, init="zeros")


def test_encode_gray_item_into_rgb_run(image_dir: Path, tmp_path: Path):
    run = inrkit.fit(TINY, data=[str(image_dir)], out=tmp_path / "run").run_dir
    iio.imwrite(tmp_path / "g.png", make_image(10, 10, channels=1)[..., 0])
    result = inrkit.encode(run, [str(tmp_path / "g.png")], out=tmp_path / "enc", train={"steps": 2})
    assert result.items[0].channels == 3
