"""Regression tests for problems found in review: nothing saved is lost, odd inputs get messages."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_image

import inrkit
from inrkit.cli import main
from inrkit.images import read_image, write_image
from inrkit.plugins import get_registry

TINY = {"model": {"width": 16, "layers": 3}, "train": {"steps": 3}}


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_sixteen_bit_colour_round_trip(tmp_path: Path):
    values = np.random.default_rng(0).random((5, 7, 3)).astype(np.float32)
    path = write_image(tmp_path / "c.png", values, bit_depth=16)
    back = read_image(path)
    assert back.dtype == np.uint16 and back.shape == (5, 7, 3)
    np.testing.assert_allclose(back / 65535.0, values, atol=1 / 65535)
    item = get_registry().get("signal", "image")().load([str(path)])[0]
    assert item.meta["bit_depth"] == 16 and item.channels == 3


def test_reconstruction_write_failure_keeps_checkpoint_and_metrics(image_dir: Path, tmp_path: Path, monkeypatch):
    cls = get_registry().get("signal", "image")

    def broken(self, item, reconstruction, folder):
        raise OSError("disk full")

    monkeypatch.setattr(cls, "save", broken)
    result = cli("run", "--data", image_dir, "--width", "8", "--steps", "2", "--out", tmp_path / "r", "--no-progress")
    assert result.exit_code != 0 and "disk full" in result.output and "checkpoint and metrics.json are saved" in result.output
    assert (tmp_path / "r" / "checkpoint.safetensors").is_file() and (tmp_path / "r" / "metrics.json").is_file()
    assert inrkit.load(tmp_path / "r").decode(0).shape == (24, 24, 3)


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


def test_repeated_names_never_collide(tmp_path: Path):
    for sub, name in (("d1", "a"), ("d2", "a"), ("d3", "a-2")):
        (tmp_path / sub).mkdir()
        iio.imwrite(tmp_path / sub / f"{name}.png", make_image(6, 6))
    items = get_registry().get("signal", "image")().load([str(tmp_path / d) for d in ("d1", "d2", "d3")])
    names = [it.name for it in items]
    assert len(set(names)) == 3 and names == ["a", "a-3", "a-2"]


def test_flag_naming_the_default_plugin_keeps_config_options(image_dir: Path, tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[sharing]\nprojection = false\n[model]\nwidth = 8\n[train]\nsteps = 1\n")
    r = cli("run", "--config", cfg, "--sharing", "minr", "--data", image_dir, "--out", tmp_path / "r", "--no-progress")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "r" / "config.json").read_text())["sharing"]["projection"] is False


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "inf"], "train.lr"),
        (["--set", "activation.omega=Infinity"], "activation.omega"),
        (["--seed", "99999999999999999999999"], "train.seed"),
        (["--seed", "-1"], "train.seed"),
        (["--data", ""], "empty path"),
    ],
)
def test_more_bad_inputs(image_dir: Path, tmp_path: Path, args, message):
    data = [] if "--data" in args else ["--data", image_dir]
    r = cli("run", *data, *args, "--width", "8", "--steps", "1", "--out", tmp_path / "o", "--no-progress")
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_fit_accepts_a_single_path_string(image_dir: Path):
    assert len(inrkit.fit(TINY, data=str(image_dir), save=False).items) == 4


def test_encode_gray_item_into_rgb_run(image_dir: Path, tmp_path: Path):
    run = inrkit.fit(TINY, data=[str(image_dir)], out=tmp_path / "run").run_dir
    iio.imwrite(tmp_path / "g.png", make_image(10, 10, channels=1)[..., 0])
    result = inrkit.encode(run, [str(tmp_path / "g.png")], out=tmp_path / "enc", train={"steps": 2})
    assert result.items[0].channels == 3
