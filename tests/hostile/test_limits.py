"""Limits: renders, readers and sizes refused from what they claim, before anything is allocated.

Part of the hardening suite (``tests/hostile/``, one module per subject); the helpers are in
``support.py``, the ``images`` and ``tiny_run`` fixtures in ``tests/conftest.py``.
"""

from __future__ import annotations

import math
import os
import struct
import sys
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import make_image
from support import cli, craft, items_meta, one_clean_error

import inrkit
from inrkit import images as image_io
from inrkit import limits
from inrkit.errors import ConfigError, DataError


# -- 2. unbounded renders --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [["--scale", "2000"], ["--size", "100000x100000"], ["--scale", "1e308"], ["--scale", "inf"], ["--scale", "nan"],
     ["--size", "99999999999999999999x2"]],
    ids=["scale-2000", "size-1e10", "scale-1e308", "scale-inf", "scale-nan", "size-huge-int"],
)
def test_decode_refuses_huge_renders_before_allocating(tiny_run: Path, tmp_path: Path, args: list[str]):
    result = cli("decode", tiny_run, "--item", "0", *args, "-o", tmp_path / "o.png")
    one_clean_error(result)
    assert not (tmp_path / "o.png").exists()


def test_decode_refuses_a_huge_eval_shape_in_the_metadata(tiny_run: Path, tmp_path: Path):
    meta = items_meta(tiny_run)
    meta[0]["eval_shape"] = [1_000_000, 1_000_000]
    run = craft(tiny_run, tmp_path / "big", items=meta)
    one_clean_error(cli("decode", run, "--item", "0", "-o", tmp_path / "o.png"), "over the limit", "--max-pixels")
    one_clean_error(cli("decode", run, "--all", "-o", tmp_path / "all"), "over the limit")
    assert not (tmp_path / "all").exists()  # checked before the first file is written


def test_the_pixel_limit_is_documented_and_can_be_raised(tiny_run: Path, tmp_path: Path, monkeypatch):
    run = inrkit.load(tiny_run)
    assert limits.MAX_PIXELS == 100_000_000
    with pytest.raises(ConfigError, match="over the limit of 100"):
        run.decode(0, size=(20, 20), max_pixels=100)
    assert run.decode(0, size=(10, 10), max_pixels=100).shape == (10, 10, 3)
    one_clean_error(cli("decode", tiny_run, "--item", "0", "--size", "20x20", "--max-pixels", "100", "-o", tmp_path / "a.png"))
    assert cli("decode", tiny_run, "--item", "0", "--size", "10x10", "--max-pixels", "100", "-o", tmp_path / "b.png").exit_code == 0
    monkeypatch.setenv("INRKIT_MAX_PIXELS", "50")
    with pytest.raises(ConfigError, match="INRKIT_MAX_PIXELS"):
        run.decode(0)  # 8x8 = 64 pixels > 50
    monkeypatch.setenv("INRKIT_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="INRKIT_MAX_PIXELS"):
        run.decode(0)


def test_decode_streams_into_the_output(tiny_run: Path, monkeypatch):
    """No full coordinate grid and no second copy: the model sees chunks, and the result equals
    the whole-grid render bit for bit (decoding does not change at the default sizes)."""
    from inrkit import coords
    from inrkit.runs import folder
    from inrkit.training import points

    run = inrkit.load(tiny_run)
    model = run.model_for(1)
    reference = points.render(model, coords.grid((40, 30)).unsqueeze(0), 256)[0].reshape(40, 30, -1).numpy()
    seen: list[int] = []
    real_model_for = run.model_for

    def spying(item, device="cpu"):
        m = real_model_for(item, device)
        forward = m.forward
        m.forward = lambda c, *a, **k: (seen.append(c.shape[1]), forward(c, *a, **k))[1]
        return m

    def no_whole_grid(shape, device=None):
        raise AssertionError(f"the whole {shape} grid was built")

    monkeypatch.setattr(run, "model_for", spying)
    monkeypatch.setattr(folder, "auto_chunk_rows", lambda device: 256)
    monkeypatch.setattr(points, "grid", no_whole_grid)
    monkeypatch.setattr(coords, "grid", no_whole_grid)
    monkeypatch.setattr(torch, "cat", lambda *a, **k: (_ for _ in ()).throw(AssertionError("a second copy")))
    out = run.decode(1, size=(40, 30))
    monkeypatch.undo()
    assert max(seen) <= 256 and sum(seen) == 1200
    assert np.array_equal(out, reference)
    default = inrkit.load(tiny_run).decode("img1")
    assert np.array_equal(default, points.render(model, coords.grid((8, 8)).unsqueeze(0))[0].reshape(8, 8, -1).numpy())


# -- 3. one pixel limit for every reader, from the header ------------------------------------------
def _png(width: int, height: int, depth: int, color: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("depth", [16, 8])
def test_a_png_claiming_a_huge_size_is_refused_from_its_header(tmp_path: Path, depth: int, monkeypatch):
    import png

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png(20000, 20000, depth))

    def never(*args, **kwargs):
        raise AssertionError("the decoder must not run")

    monkeypatch.setattr(png, "Reader", never)
    with pytest.raises(DataError, match="400,000,000 pixels, over the limit"):
        image_io.read_pixels(bomb)


def test_a_jpeg_claiming_a_huge_size_is_refused(tmp_path: Path):
    good = tmp_path / "good.jpg"
    iio.imwrite(good, make_image(16, 16))
    data = bytearray(good.read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(bytes(data))
    with pytest.raises(DataError, match="over the limit"):
        image_io.read_pixels(bomb)


def test_the_reader_limit_follows_the_environment(tmp_path: Path, monkeypatch):
    path = tmp_path / "x.png"
    iio.imwrite(path, make_image(24, 24))
    assert image_io.read_pixels(path).shape == (24, 24, 3)
    monkeypatch.setenv("INRKIT_MAX_PIXELS", "500")
    with pytest.raises(DataError, match="576 pixels, over the limit of 500"):
        image_io.read_pixels(path)
    png16 = tmp_path / "x16.png"
    image_io.write_png(png16, make_image(24, 24) / 255.0, bit_depth=16)
    with pytest.raises(DataError, match="over the limit of 500"):
        image_io.read_pixels(png16)


# -- 12. absurd sizes ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--width", "1000000"], "model.width"),
        (["--layers", "1000000"], "model.layers"),
        (["--steps", "1000000000000"], "train.steps"),
        (["--set", "train.chunk_points=99999999999"], "train.chunk_points"),
        (["--width", "16384", "--layers", "200"], "needs about"),
    ],
)
def test_absurd_sizes_are_refused_before_building(images: Path, tmp_path: Path, args, message):
    result = cli("run", "--data", images, *args, "--out", tmp_path / "o", "--no-progress")
    one_clean_error(result, message)
    assert not (tmp_path / "o").exists()


def test_the_memory_estimate_names_its_parts_and_can_be_switched_off(images: Path, tmp_path: Path, monkeypatch):
    from inrkit.runs import fit as pipeline

    monkeypatch.setattr(pipeline, "available_memory", lambda: 1000)
    result = cli("run", "--data", images, "--width", "8", "--steps", "1", "--out", tmp_path / "o", "--no-progress")
    one_clean_error(result, "needs about", "parameters", "targets", "INRKIT_MEMORY_CHECK=0")
    monkeypatch.setenv("INRKIT_MEMORY_CHECK", "0")
    assert cli("run", "--data", images, "--width", "8", "--steps", "1", "--out", tmp_path / "o", "--no-progress").exit_code == 0


@pytest.mark.parametrize("args", [["--size", "100000"], ["--width", "1000000"], ["--items", "100000", "--size", "4096"]])
def test_bench_refuses_absurd_sizes(args):
    result = cli("bench", *args, "--repeats", "1", "--no-naive", "--device", "cpu")
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.output.startswith(("Error:", "Usage:")), result.output


def test_a_video_too_large_to_decode_is_refused_before_decoding(tmp_path: Path, monkeypatch):
    import inrkit_signals.video as video

    clip = tmp_path / "clip.mp4"
    iio.imwrite(clip, np.stack([make_image(16, 16, seed=i) for i in range(4)]), plugin="pyav", codec="libx264", fps=4)
    monkeypatch.setattr(video, "available_memory", lambda: 1000)
    decoded: list[int] = []
    monkeypatch.setattr(iio, "imiter", lambda *a, **k: decoded.append(1) or iter(()))
    result = cli("run", "--signal", "video", "--data", clip, "--steps", "1", "--out", tmp_path / "o", "--no-progress")
    one_clean_error(result, "4 frames of 16x16 need about", "signal.frames")
    assert not decoded


def test_limits_are_consistent():
    assert limits.MAX_PIXELS < 2 * 89_478_485  # below Pillow's own refusal
    assert limits.pixel_limit() == limits.MAX_PIXELS or os.environ.get(limits.PIXELS_ENV)
    assert math.isclose(limits.count_pixels((10_000, 10_000)), limits.MAX_PIXELS)
    assert sys.maxsize > limits.MAX_WIDTH**2


# -- round two: sizes a file declares are bounded in total ----------------------------------------
def test_a_model_a_file_declares_is_checked_against_memory_before_it_is_built(tiny_run: Path, tmp_path: Path, monkeypatch):
    """A 1 KB .inrz (or checkpoint) whose config declares a 16384-wide model built ~7 GB of
    weights before anything was checked: now the model's size is compared with the memory."""
    from inrkit.runs import folder

    inrz = tmp_path / "small.inrz"
    assert cli("compress", tiny_run, "-o", inrz).exit_code == 0
    monkeypatch.setattr(folder, "available_memory", lambda: 1000)
    built: list[int] = []
    real = folder.build_model

    def counting(*args, **kwargs):
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(folder, "build_model", counting)
    for source in (tiny_run, inrz):
        built.clear()
        result = cli("decode", source, "--item", "0", "-o", tmp_path / "x.png")
        one_clean_error(result, "declares a model", "INRKIT_MEMORY_CHECK=0")
        assert len(built) <= 2, "the model was built for real before the check"
        assert not (tmp_path / "x.png").exists()
    monkeypatch.setenv("INRKIT_MEMORY_CHECK", "0")
    assert cli("decode", inrz, "--item", "0", "-o", tmp_path / "x.png").exit_code == 0


def test_the_memory_check_sees_the_declared_size_without_allocating(tiny_run: Path, monkeypatch):
    from inrkit.runs import folder

    run = inrkit.load(tiny_run)
    run.config = run.config.model_copy(update={"model": run.config.model.model_copy(update={"width": 16384, "layers": 8})})
    monkeypatch.setattr(folder, "available_memory", lambda: 4 << 30)
    with pytest.raises(ConfigError, match=r"declares a model of (\d|\.)+ GiB"):
        run.model_for(0)
