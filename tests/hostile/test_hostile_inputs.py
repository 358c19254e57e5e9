"""Hostile inputs and faults: every bad input refused cleanly, nothing lost, nothing written outside.

One section per defect of the hardening review (issue 14), in its order. Each test failed before
its fix. Faults that need a real disk or a read-only folder are injected (the suite may run as
root, where permissions do not stop a write): ``tempfile.mkstemp`` or the writer raise the
``OSError`` a full or read-only disk raises.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import stat
import struct
import sys
import threading
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import entry_point, make_image
from safetensors.torch import load_file, save_file

import inrkit
from inrkit import files, limits
from inrkit import images as image_io
from inrkit.cli import main
from inrkit.errors import CheckpointError, ConfigError, DataError, InrkitError, StorageError, TrainingInterrupted

TINY = {"model": {"width": 8, "layers": 3}, "train": {"steps": 2, "lr": 1e-3}}


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_clean_error(result, *fragments: str, code: int | None = None) -> None:
    """A refusal: non-zero exit (or ``code``), exactly one ``Error:`` line, no traceback."""
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and len(result.output.strip().splitlines()) == 1 + sum(
        1 for line in result.output.splitlines() if line.startswith(("Warning:", "Note:"))
    ), result.output
    for fragment in fragments:
        assert fragment in lines[0], result.output


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i in range(2):
        iio.imwrite(folder / f"img{i}.png", make_image(8, 8, seed=i))
    return folder


@pytest.fixture(scope="module")
def tiny_run(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return inrkit.fit(TINY, data=[str(images)], out=tmp_path_factory.mktemp("runs") / "tiny").run_dir


def craft(run: Path, dest: Path, *, items=None, config=None, metadata=None, tensors=None, drop_sums: bool = False) -> Path:
    """A copy of ``run`` with rewritten checkpoint metadata or tensors, its SHA256SUMS updated (a
    careful attacker's folder: the checksum only guards against corruption)."""
    shutil.copytree(run, dest)
    path = dest / "checkpoint.safetensors"
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        meta = dict(handle.metadata())
    state = load_file(str(path))
    if items is not None:
        meta["items"] = json.dumps(items)
    if config is not None:
        meta["config"] = json.dumps(config)
    meta.update(metadata or {})
    if tensors is not None:
        state = tensors(state)
    save_file(state, str(path), metadata=meta)
    sums = dest / "SHA256SUMS"
    if drop_sums:
        sums.unlink(missing_ok=True)
    elif sums.exists():
        sums.write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  checkpoint.safetensors\n")
    return dest


def items_meta(run: Path) -> list[dict]:
    return inrkit.load(run).items


# -- 1. path traversal -----------------------------------------------------------------------------
EVIL_NAMES = ["../../escaped", "ABS", "..", ".", "a/../../b", "sub/dir/x", "..\\..\\win", "", "CON", "x\x00y", "\n", "img1"]


@pytest.mark.parametrize("evil", EVIL_NAMES, ids=[repr(n) for n in EVIL_NAMES])
def test_decode_all_writes_only_inside_the_output_folder(tiny_run: Path, tmp_path: Path, evil: str):
    if evil == "ABS":
        evil = str(tmp_path / "abs" / "evil")
    meta = items_meta(tiny_run)
    meta[0]["name"] = evil
    run = craft(tiny_run, tmp_path / "evil", items=meta)
    out = tmp_path / "a" / "b" / "out"
    before = files_under(tmp_path)
    result = cli("decode", run, "--all", "-o", out, "--force")
    assert result.exit_code == 0, result.output
    written = files_under(tmp_path) - before
    assert written and all(out in p.parents and p.parent == out for p in written), written
    assert len(written) == 2  # two items, two distinct files (names are unique after sanitising)
    assert not (tmp_path / "abs").exists() and not (tmp_path / "escaped.png").exists()


def test_decode_all_refuses_nothing_but_makes_colliding_names_distinct(tiny_run: Path, tmp_path: Path):
    meta = items_meta(tiny_run)
    meta[0]["name"], meta[1]["name"] = "same/name", "same_name"
    run = craft(tiny_run, tmp_path / "collide", items=meta)
    assert cli("decode", run, "--all", "-o", tmp_path / "out").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["same_name-2.png", "same_name.png"]


def test_decode_all_does_not_follow_a_planted_link(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "img0.png").symlink_to(victim)
    result = cli("decode", tiny_run, "--all", "-o", out)
    one_clean_error(result, "already exist")  # a dangling or planted link counts as existing
    assert cli("decode", tiny_run, "--all", "-o", out, "--force").exit_code == 0
    assert victim.read_text() == "precious" and not (out / "img0.png").is_symlink()


def test_item_names_from_a_signal_never_leave_the_run_folder(tmp_path: Path, plugin_module, fresh_registry):
    absolute = tmp_path / "abs" / "evil"
    module = plugin_module(
        "evil_signal",
        """
        import numpy as np
        import inrkit
        from inrkit.interfaces import Item
        from inrkit_signals.image import ImageSignal

        class Evil(ImageSignal):
            name = "evil"

            def load(self, sources):
                data = np.linspace(0, 1, 8 * 8 * 3, dtype=np.float32).reshape(8, 8, 3)
                names = ["../../outside", ABSOLUTE, "con", "a\\x00b"]
                return [Item(name=n, data=data.copy(), meta={"source": "x"}) for n in names]

        @inrkit.hookimpl
        def inrkit_register_signals():
            return [Evil]
        """.replace("ABSOLUTE", repr(str(absolute))),
    )
    registry = fresh_registry(entry_point("evil", module))
    before = files_under(tmp_path)
    result = inrkit.fit({**TINY, "signal": {"name": "evil"}}, out=tmp_path / "run", registry=registry)
    written = files_under(tmp_path) - before
    assert all((tmp_path / "run") in p.parents for p in written), written
    assert not (tmp_path / "abs").exists()
    recon = sorted(p.name for p in (tmp_path / "run" / "recon").iterdir())
    assert len(recon) == 4 and all("/" not in n and not n.startswith(".") for n in recon), recon
    names = [it.name for it in result.metrics.items]
    assert names[0] == "outside" and names[1].endswith("_abs_evil") and names[2:] == ["_con", "a_b"], names
    assert "/" not in names[1] and not names[1].startswith(("_", ".")), names


def test_encode_refuses_callback_paths_from_a_crafted_run(tiny_run: Path, images: Path, tmp_path: Path):
    config = inrkit.load(tiny_run).config.model_dump(mode="json")
    target = tmp_path / "victim" / "log.jsonl"
    config["train"]["callbacks"] = [{"name": "jsonl", "path": str(target)}]
    run = craft(tiny_run, tmp_path / "crafted", config=config)
    result = cli("encode", run, "--data", images, "--out", tmp_path / "enc", "--steps", "1", "--no-progress")
    one_clean_error(result, "points outside the run folder")
    assert not target.exists() and not (tmp_path / "enc").exists()
    config["train"]["callbacks"] = [{"name": "jsonl", "path": "../../up.jsonl"}]
    run = craft(tiny_run, tmp_path / "crafted2", config=config)
    one_clean_error(cli("encode", run, "--data", images, "--out", tmp_path / "enc", "--steps", "1"), "points outside")


def test_resume_refuses_callback_paths_outside_the_run(tmp_path: Path):
    folder = tmp_path / "run"
    folder.mkdir()
    config = inrkit.as_config({"train": {"callbacks": [{"name": "jsonl", "path": str(tmp_path / "x.jsonl")}]}})
    (folder / "config.json").write_text(json.dumps(config.model_dump(mode="json")))
    torch.save({"step": 0, "model": {}, "optimizer": {}, "scheduler": {}, "history": [], "seconds": 0.0}, folder / "resume.pt")
    one_clean_error(cli("run", "--resume", folder), "points outside the run folder")


def test_compare_variant_names_stay_inside():
    from inrkit.experiments.compare import Variant

    for name in ("..", ".", "../x", ".hidden", "a/b"):
        slug = Variant(name, ("train.steps=1",)).folder_name
        assert slug not in (".", "..") and "/" not in slug and not slug.startswith("."), slug


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
    from inrkit.training import points
    from inrkit.runs import folder

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


# -- 4. colour spaces ------------------------------------------------------------------------------
def _rgb() -> np.ndarray:
    return make_image(32, 32, seed=5)


@pytest.mark.parametrize("kind", ["cmyk-jpeg", "cmyk-tiff", "palette-png", "lab-tiff", "hsv-via-rgbx-tiff"])
def test_colour_spaces_are_converted_not_misread(tmp_path: Path, kind: str):
    from PIL import Image, ImageCms

    rgb = _rgb()
    image = Image.fromarray(rgb)
    path = tmp_path / {"cmyk-jpeg": "x.jpg", "palette-png": "x.png"}.get(kind, "x.tif")
    if kind.startswith("cmyk"):
        image.convert("CMYK").save(path, quality=95)
    elif kind == "palette-png":
        image.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(path)
    elif kind == "lab-tiff":
        ImageCms.applyTransform(
            image, ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
        ).save(path)
    else:
        image.convert("RGBX").save(path)
    items = inrkit.plugins.get_registry().create("signal", "image").load([str(path)])
    data = items[0].data
    assert data.shape == (32, 32, 3), data.shape
    error = np.abs(data - rgb / 255.0).mean()
    assert error < 0.06, f"{kind}: mean error {error:.3f} (a blank or misread image is far off)"


def test_an_unsupported_colour_space_is_refused(tmp_path: Path):
    import tifffile

    # A TIFF whose photometric interpretation neither tifffile nor Pillow turns into colours: a mask.
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), photometric=4)
    with pytest.raises(DataError, match="cannot read image"):
        image_io.read_pixels(path)


def test_all_nan_float_tiff_and_videos_are_refused(tmp_path: Path):
    nan = tmp_path / "nan.tif"
    iio.imwrite(nan, np.full((8, 8), np.nan, np.float32))
    with pytest.raises(DataError, match="no pixel has a finite value"):
        image_io.read_pixels(nan)
    some = tmp_path / "some.tif"
    values = np.full((8, 8), 0.5, np.float32)
    values[0, 0] = np.nan
    iio.imwrite(some, values)
    with pytest.warns(RuntimeWarning, match="1 NaN or infinite"):
        image_io.read_pixels(some)
    video = tmp_path / "clip.mp4"
    frames = np.stack([make_image(16, 16, seed=i) for i in range(4)])
    iio.imwrite(video, frames, plugin="pyav", codec="libx264", fps=4)
    result = cli("run", "--data", video, "--width", "8", "--steps", "1", "--out", tmp_path / "r", "--no-progress")
    one_clean_error(result, "is a video or audio file", "--signal video")
    assert not (tmp_path / "r").exists()


# -- 5. failed writes ------------------------------------------------------------------------------
def _disk_full(monkeypatch):
    """``safetensors.torch.save_file`` writing half the file and failing, as on a full disk."""
    import safetensors.torch

    real = safetensors.torch.save_file

    def failing(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"\0" * 100)  # what got out before the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", failing)
    return real


def test_a_full_disk_at_the_checkpoint_keeps_the_trained_model(images: Path, tmp_path: Path, monkeypatch):
    reference = inrkit.fit(TINY, data=[str(images)], out=tmp_path / "whole")
    real = _disk_full(monkeypatch)
    out = tmp_path / "full"
    result = cli("run", "--data", images, "--width", "8", "--layers", "3", "--steps", "2", "--lr", "1e-3",
                 "--out", out, "--no-progress")
    one_clean_error(result, "No space left on device", "saved as a snapshot", "--resume")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["config.json", "resume.pt"], names  # no partial checkpoint, no temporary file
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", real)
    resumed = inrkit.fit(resume=out)
    assert [it.psnr for it in resumed.metrics.items] == [it.psnr for it in reference.metrics.items]
    assert not (out / "resume.pt").exists() and (out / "checkpoint.safetensors").is_file()


def test_the_free_space_is_checked_before_training(images: Path, tmp_path: Path, monkeypatch):
    from inrkit.runs import fit as pipeline

    trained: list[int] = []
    monkeypatch.setattr(pipeline, "free_disk", lambda path: 10_000)
    monkeypatch.setattr(inrkit.Trainer, "fit", lambda *a, **k: trained.append(1))
    result = cli("run", "--data", images, "--width", "8", "--steps", "2", "--out", tmp_path / "r", "--no-progress")
    one_clean_error(result, "need about", "free")
    assert not trained and not (tmp_path / "r").exists()


def _read_only(monkeypatch, root: Path) -> None:
    """Creating files or folders under ``root`` fails as on a read-only file system."""
    import tempfile

    real_mkstemp, real_mkdir = tempfile.mkstemp, Path.mkdir

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and (Path(dir) == root or root in Path(dir).resolve().parents or Path(dir).resolve() == root.resolve()):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkstemp(*args, dir=dir, **kwargs)

    def mkdir(self, *args, **kwargs):
        resolved = Path(os.path.abspath(self))
        if (resolved == root or root in resolved.parents) and not self.exists():
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_no_out_in_a_read_only_working_directory(images: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _read_only(monkeypatch, tmp_path.resolve())
    result = cli("run", "--data", images, "--width", "8", "--steps", "1", "--no-progress")
    one_clean_error(result, "Read-only file system", "--out")


def test_resume_on_a_read_only_disk_is_refused_before_training(images: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        _interrupt_after_steps(monkeypatch, 1)
        inrkit.fit({**TINY, "train": {"steps": 5}}, data=[str(images)], out=out)
    monkeypatch.undo()
    _read_only(monkeypatch, out.resolve())
    trained: list[int] = []
    real_fit = inrkit.Trainer.fit
    monkeypatch.setattr(inrkit.Trainer, "fit", lambda *a, **k: trained.append(1) or real_fit(*a, **k))
    one_clean_error(cli("run", "--resume", out), "Read-only file system")
    assert not trained and (out / "resume.pt").is_file()


def test_analyze_into_a_read_only_folder(tiny_run: Path, tmp_path: Path, monkeypatch):
    target = tmp_path / "ro"
    target.mkdir()
    _read_only(monkeypatch, target.resolve())
    one_clean_error(cli("analyze", "weights", tiny_run, "-o", target / "w.png"), "Read-only file system")
    assert list(target.iterdir()) == []


def test_a_full_disk_leaves_no_empty_figure(images: Path, tmp_path: Path, monkeypatch):
    import matplotlib.figure

    def full(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    with pytest.warns(RuntimeWarning, match="could not draw the plots"):
        inrkit.fit(TINY, data=[str(images)], out=tmp_path / "r", plots=True)
    assert not (tmp_path / "r" / "plots").exists() or not any((tmp_path / "r" / "plots").iterdir())
    assert (tmp_path / "r" / "checkpoint.safetensors").is_file()


# -- 6. signals ------------------------------------------------------------------------------------
def _interrupt_after_steps(monkeypatch, steps: int, exc: type[BaseException] = KeyboardInterrupt, *args) -> None:
    from inrkit.interfaces import Callback

    class Interrupt(Callback):
        name = "interrupt"

        def on_step_end(self, context, log):
            if log.step >= steps:
                raise exc(*args)

    from inrkit import api

    real = api._callbacks
    monkeypatch.setattr(api, "_callbacks", lambda registry, progress, callbacks: [*real(registry, progress, callbacks), Interrupt()])


def test_sigterm_saves_a_snapshot_and_exits_143(images: Path, tmp_path: Path, monkeypatch):
    from inrkit.errors import Terminated

    _interrupt_after_steps(monkeypatch, 1, Terminated, 15)
    out = tmp_path / "r"
    result = cli("run", "--data", images, "--width", "8", "--steps", "5", "--out", out, "--no-progress")
    one_clean_error(result, "snapshot was saved", "--resume", code=143)
    assert torch.load(out / "resume.pt", weights_only=True)["step"] == 1
    monkeypatch.undo()
    assert inrkit.fit(resume=out).metrics.steps == 5


@pytest.mark.parametrize("where", ["load", "model", "evaluate"])
def test_ctrl_c_outside_the_loop_exits_130_and_a_rerun_works(images: Path, tmp_path: Path, monkeypatch, where: str):
    from inrkit.runs import fit as pipeline

    if where == "load":
        monkeypatch.setattr(pipeline, "check_items", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    elif where == "model":
        monkeypatch.setattr(inrkit.Trainer, "_points", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    else:
        monkeypatch.setattr(pipeline, "evaluate", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    out = tmp_path / "r"
    result = cli("run", "--data", images, "--width", "8", "--steps", "2", "--out", out, "--no-progress")
    one_clean_error(result, "interrupted", code=130)
    assert "Aborted" not in result.output
    monkeypatch.undo()
    marked = (out / "failed.json").is_file()
    assert not out.exists() or marked
    with pytest.warns(RuntimeWarning, match="replacing the failed run") if marked else contextlib.nullcontext():
        rerun = cli("run", "--data", images, "--width", "8", "--steps", "2", "--out", out, "--no-progress")
    assert rerun.exit_code == 0, rerun.output


def test_sigterm_is_handled_by_the_cli_and_restored_after(images: Path):
    import signal as signals

    before = signals.getsignal(signals.SIGTERM)
    seen = []

    @main.command("probe-signal")
    def probe() -> None:
        seen.append(signals.getsignal(signals.SIGTERM))

    try:
        assert cli("probe-signal").exit_code == 0
    finally:
        main.commands.pop("probe-signal")
    assert seen and seen[0] not in (before, signals.SIG_DFL) and signals.getsignal(signals.SIGTERM) == before


# -- 7. symlink loops ------------------------------------------------------------------------------
def test_recursive_globs_do_not_follow_link_loops(tmp_path: Path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    iio.imwrite(root / "a.png", make_image(6, 6))
    iio.imwrite(root / "sub" / "b.png", make_image(6, 6, seed=1))
    (root / "sub" / "loop").symlink_to(root)
    (root / "twin.png").symlink_to(root / "a.png")
    items = inrkit.plugins.get_registry().create("signal", "image").load([f"{root}/**/*.png"])
    assert sorted(it.name for it in items) == ["a", "b"]


def test_the_recursive_glob_matches_python_glob_without_links(tmp_path: Path, monkeypatch):
    import glob

    from inrkit.sources import _glob

    for rel in ("x.png", "a/y.png", "a/b/z.png", "a/b/t.jpg", ".h/q.png", "c/.w.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    for pattern in ("**/*.png", "**", "*/*.png", "**/b/*", "a/**/*.png", "**/.*.png", f"{tmp_path}/**/*.png", "a*/**/z.png"):
        assert set(_glob(pattern)) == {p.rstrip("/") for p in glob.glob(pattern, recursive=True)} - {""}, pattern


# -- 8. analyze weights ----------------------------------------------------------------------------
def test_analyze_a_width_one_run(images: Path, tmp_path: Path):
    run = inrkit.fit({"model": {"width": 1, "layers": 3}, "train": {"steps": 2}}, data=[str(images)], out=tmp_path / "w1").run_dir
    result = cli("analyze", "weights", run, "-o", tmp_path / "w.png")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "w.json").read_text())
    assert (tmp_path / "w.png").stat().st_size > 0 and report["layers"]


def test_analyze_nan_weights_writes_valid_json(tiny_run: Path, tmp_path: Path):
    def poison(state):
        state["items.0.first.weight"] = torch.full_like(state["items.0.first.weight"], float("nan"))
        return state

    run = craft(tiny_run, tmp_path / "nan", tensors=poison)
    result = cli("analyze", "weights", run, "-o", tmp_path / "w.png")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "w.json").read_text()
    assert "NaN" not in text and json.loads(text)["layers"][0]["per_curve"]["nan/img0"]["mean"] is None


def test_analyze_writes_both_outputs_or_neither(tiny_run: Path, tmp_path: Path, monkeypatch):
    def broken(path, data):
        raise StorageError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(files, "write_json", broken)
    one_clean_error(cli("analyze", "weights", tiny_run, "-o", tmp_path / "w.png"), "No space left")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert cli("analyze", "weights", tiny_run, "-o", tmp_path / "w.png").exit_code == 0  # no --force needed


# -- 9. tampered or mismatched run folders ---------------------------------------------------------
def test_encode_with_wrong_tensor_shapes(tiny_run: Path, images: Path, tmp_path: Path):
    def widen(state):
        key = next(k for k in state if k.startswith("shared.") and k.endswith("weight"))
        state[key] = torch.zeros(3, 5)
        return state

    run = craft(tiny_run, tmp_path / "bad", tensors=widen)
    result = cli("encode", run, "--data", images, "--out", tmp_path / "enc", "--steps", "1", "--no-progress")
    one_clean_error(result, "does not match the model its config builds", "has shape (3, 5)")
    one_clean_error(cli("decode", run, "--item", "0", "-o", tmp_path / "x.png"), "has shape (3, 5)")


def test_resume_after_config_json_was_edited(images: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "run"
    _interrupt_after_steps(monkeypatch, 1)
    with pytest.raises(TrainingInterrupted):
        inrkit.fit({**TINY, "train": {"steps": 5}}, data=[str(images)], out=out)
    monkeypatch.undo()
    original = (out / "config.json").read_text()
    config = json.loads(original)
    config["model"]["width"] = 16
    (out / "config.json").write_text(json.dumps(config))
    one_clean_error(cli("run", "--resume", out), "snapshot resume.pt", "config.json edited")
    config["model"]["width"] = "sixteen"
    (out / "config.json").write_text(json.dumps(config))
    one_clean_error(cli("run", "--resume", out), "config.json", "model.width")
    assert not (out / "failed.json").exists()  # the snapshot is kept, not marked for replacing
    (out / "config.json").write_text(original)
    assert inrkit.fit(resume=out).metrics.steps == 5


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m[0].update(shape=["a", 8]),
        lambda m: m[0].update(shape=[8.5, 8]),
        lambda m: m[0].update(shape=[True, 8]),
        lambda m: m[0].update(shape=[0, 8]),
        lambda m: m[0].update(shape=[-8, 8]),
        lambda m: m[0].update(channels="3"),
        lambda m: m[0].pop("name"),
        lambda m: m[0].update(name=["a"]),
        lambda m: m.clear(),
        lambda m: m[0].update(eval_shape=[8, 8, 8]),
    ],
    ids=["str-size", "float-size", "bool-size", "zero", "negative", "str-channels", "no-name", "list-name", "no-items", "eval-dims"],
)
def test_decode_with_bad_metadata(tiny_run: Path, tmp_path: Path, change):
    meta = items_meta(tiny_run)
    change(meta)
    run = craft(tiny_run, tmp_path / "bad", items=meta)
    one_clean_error(cli("decode", run, "--item", "0", "-o", tmp_path / "x.png"), "checkpoint.safetensors")


@pytest.mark.parametrize("metadata", [{"items": "not json["}, {"config": '{"model": {"width": "x"}}'}, {"format_version": "9"}])
def test_other_bad_metadata(tiny_run: Path, tmp_path: Path, metadata):
    run = craft(tiny_run, tmp_path / "bad", metadata=metadata)
    one_clean_error(cli("decode", run, "--item", "0", "-o", tmp_path / "x.png"))


@pytest.mark.parametrize("key", ["items.x.first.weight", "items", "items.0", "items.7.first.weight", "items.-1.first.weight"])
def test_malformed_tensor_keys(tiny_run: Path, tmp_path: Path, key: str):
    def add(state):
        state[key] = torch.zeros(2)
        return state

    run = craft(tiny_run, tmp_path / "bad", tensors=add)
    for args in (["analyze", "weights", run, "-o", tmp_path / "w.png"], ["decode", run, "--item", "0", "-o", tmp_path / "x.png"]):
        one_clean_error(cli(*args), "checkpoint.safetensors")
    assert not (tmp_path / "w.png").exists()


# -- 10. plugins that exit -------------------------------------------------------------------------
def test_a_plugin_calling_sys_exit_is_isolated(plugin_module, fresh_registry, monkeypatch):
    exits = plugin_module("exits_at_import", "import sys\nsys.exit(3)\n")
    hook_exits = plugin_module(
        "exits_in_hook",
        """
        import sys
        import inrkit

        @inrkit.hookimpl
        def inrkit_register_activations():
            raise SystemExit(4)
        """,
    )
    with pytest.warns(RuntimeWarning, match="sys.exit"):
        registry = fresh_registry(entry_point("exits", exits), entry_point("hook_exits", hook_exits))
    assert "siren" in registry.names("activation")
    assert {f.plugin for f in registry.failures} == {"exits", "hook_exits"}
    monkeypatch.setenv("INRKIT_STRICT_PLUGINS", "1")
    with pytest.raises(InrkitError, match="sys.exit"):
        fresh_registry(entry_point("exits", exits))


# -- 11. a diverged run ----------------------------------------------------------------------------
def test_a_diverged_run_is_marked_failed_and_a_rerun_replaces_it(images: Path, tmp_path: Path):
    out = tmp_path / "diverge"
    result = cli("run", "--data", images, "--out", out, "--lr", "1e30", "--width", "8", "--steps", "5", "--no-progress")
    one_clean_error(result, "diverged", "marked failed", f"--out {out}")
    failed = json.loads((out / "failed.json").read_text())
    assert "diverged" in failed["error"]
    one_clean_error(cli("run", "--resume", out), "nothing to resume", "failed run")
    with pytest.warns(RuntimeWarning, match="replacing the failed run"):
        rerun = cli("run", "--data", images, "--out", out, "--width", "8", "--steps", "2", "--no-progress")
    assert rerun.exit_code == 0, rerun.output
    assert not (out / "failed.json").exists() and (out / "metrics.json").is_file()


def test_a_finished_or_foreign_folder_is_never_replaced(images: Path, tmp_path: Path):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "failed.json").write_text("{}")
    (out / "metrics.json").write_text("{}")
    one_clean_error(cli("run", "--data", images, "--out", out, "--steps", "1", "--no-progress"), "already holds files")
    assert sorted(p.name for p in out.iterdir()) == ["failed.json", "metrics.json"]


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


# -- 13. one line per error ------------------------------------------------------------------------
def test_a_yaml_error_is_one_line_naming_the_file_and_line(images: Path, tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  steps: 3\n  lr: [1, 2\nmodel: {width: 8}\n")
    result = cli("run", "--config", config, "--data", images, "--out", tmp_path / "o")
    one_clean_error(result, str(config), "line ")
    assert "<unicode string>" not in result.output


def test_validation_errors_from_metadata_are_one_line_without_urls(tiny_run: Path, tmp_path: Path):
    run = craft(tiny_run, tmp_path / "bad", metadata={"config": json.dumps({"model": {"width": "x\nmore"}, "nope": 1})})
    result = cli("decode", run, "--item", "0", "-o", tmp_path / "x.png")
    one_clean_error(result, "model.width")
    assert "errors.pydantic.dev" not in result.output


def test_a_refused_snapshot_is_one_line(tmp_path: Path, images: Path, monkeypatch):
    out = tmp_path / "run"
    _interrupt_after_steps(monkeypatch, 1)
    with pytest.raises(TrainingInterrupted):
        inrkit.fit(TINY, data=[str(images)], out=out)
    monkeypatch.undo()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, out / "resume.pt")
    one_clean_error(cli("run", "--resume", out), "resume.pt", "not a readable inrkit snapshot")
    (out / "resume.pt").write_bytes(b"garbage")
    one_clean_error(cli("run", "--resume", out), "resume.pt")
    torch.save([1, 2], out / "resume.pt")
    one_clean_error(cli("run", "--resume", out), "not an inrkit snapshot")


def test_every_inrkit_error_is_printed_on_one_line():
    @main.command("probe-error")
    def probe() -> None:
        raise DataError("first line\nsecond line\n\nthird")

    try:
        result = cli("probe-error")
    finally:
        main.commands.pop("probe-error")
    one_clean_error(result, "first line; second line; third")


# -- 14. API values --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda run: run.decode(0.5),
        lambda run: run.decode(True),
        lambda run: run.decode(None),
        lambda run: run.decode(0, size=(2.7, 3.2)),
        lambda run: run.decode(0, size="10x10"),
        lambda run: run.decode(0, size=(10,)),
        lambda run: run.decode(0, size=(True, 4)),
        lambda run: run.decode(0, size=(float("nan"), 4)),
        lambda run: run.decode(0, scale="2"),
        lambda run: run.decode(0, scale=True),
        lambda run: run.decode(0, scale=-1),
        lambda run: run.decode(0, max_pixels=0),
    ],
)
def test_api_values_are_refused_with_inrkit_errors(tiny_run: Path, call):
    with pytest.raises(ConfigError):
        call(inrkit.load(tiny_run))


def test_whole_numbers_of_any_type_are_accepted(tiny_run: Path):
    run = inrkit.load(tiny_run)
    assert run.decode(np.int64(1), size=(np.int32(4), 6.0)).shape == (4, 6, 3)
    assert np.array_equal(run.decode("1"), run.decode(1)) and np.array_equal(run.decode(1.0), run.decode(1))
    with pytest.raises(DataError, match="not in run"):
        run.decode(7)


# -- 15. files that are not regular files ----------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_as_data_is_refused_without_blocking(tmp_path: Path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    outcome: list[object] = []

    def attempt() -> None:
        try:
            inrkit.plugins.get_registry().create("signal", "image").load([str(fifo)])
        except Exception as exc:  # noqa: BLE001
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # release the blocked reader, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading the named pipe blocked")
    assert len(outcome) == 1 and isinstance(outcome[0], DataError) and "named pipe" in str(outcome[0])
    result = cli("run", "--data", fifo, "--steps", "1", "--out", tmp_path / "o")
    one_clean_error(result, "named pipe")
    one_clean_error(cli("run", "--signal", "video", "--data", fifo, "--steps", "1", "--out", tmp_path / "o"), "named pipe")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipes_in_a_run_folder_are_refused(tiny_run: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "config.json").unlink()
    os.mkfifo(run / "config.json")
    torch.save({"step": 0, "model": {}, "optimizer": {}, "scheduler": {}, "history": [], "seconds": 0.0}, run / "resume.pt")
    (run / "metrics.json").unlink()
    one_clean_error(cli("run", "--resume", run), "named pipe")
    config = tmp_path / "c.toml"
    os.mkfifo(config)
    one_clean_error(cli("run", "--config", config), "not a regular file")


def test_a_device_file_as_data_is_refused():
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with pytest.raises(DataError, match="a device"):
        image_io.read_pixels("/dev/zero")


# -- beyond the list: integrity ---------------------------------------------------------------------
def test_a_run_records_its_checkpoints_sha256(tiny_run: Path):
    line = (tiny_run / "SHA256SUMS").read_text()
    digest = hashlib.sha256((tiny_run / "checkpoint.safetensors").read_bytes()).hexdigest()
    assert line == f"{digest}  checkpoint.safetensors\n"


def test_a_flipped_bit_is_a_clear_error(tiny_run: Path, tmp_path: Path):
    run = tmp_path / "flipped"
    shutil.copytree(tiny_run, run)
    data = bytearray((run / "checkpoint.safetensors").read_bytes())
    data[-3] ^= 0x01  # a bit of a tensor: the file still parses
    (run / "checkpoint.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its SHA-256"):
        inrkit.load(run)
    one_clean_error(cli("decode", run, "--item", "0", "-o", tmp_path / "x.png"), "SHA-256")
    one_clean_error(cli("verify", run), "SHA-256", code=1)
    one_clean_error(cli("analyze", "weights", run, "-o", tmp_path / "w.png"), "SHA-256")


def test_verify_a_good_and_an_old_run(tiny_run: Path):
    result = cli("verify", tiny_run)
    assert result.exit_code == 0 and "ok:" in result.output and "checkpoint.safetensors match" in result.output
    report = json.loads(cli("verify", tiny_run, "--json").output)
    assert report["checksums"] == ["checkpoint.safetensors"] and report["items"] == 2 and report["finished"]
    old = Path(__file__).parents[1] / "data" / "run-0.1.0"
    result = cli("verify", old)
    assert result.exit_code == 0 and "no SHA-256" in result.output, result.output


@pytest.mark.parametrize(
    "sums",
    ["0" * 64 + "  ../../etc/passwd\n", "nonsense\n", "0" * 64 + "  missing.safetensors\n", ""],
    ids=["traversal", "malformed", "missing-file", "no-checkpoint-line"],
)
def test_a_hostile_checksum_list_is_refused(tiny_run: Path, tmp_path: Path, sums: str):
    run = tmp_path / "r"
    shutil.copytree(tiny_run, run)
    (run / "SHA256SUMS").write_text(sums)
    with pytest.raises(CheckpointError):
        inrkit.load(run)


def test_verify_finds_a_shape_mismatch_without_decoding(tiny_run: Path, tmp_path: Path):
    def shrink(state):
        state["items.1.last.weight"] = torch.zeros(2, 2)
        return state

    run = craft(tiny_run, tmp_path / "bad", tensors=shrink)
    one_clean_error(cli("verify", run), "items.1.last.weight", "shape")


def test_limits_are_consistent():
    assert limits.MAX_PIXELS < 2 * 89_478_485  # below Pillow's own refusal
    assert limits.pixel_limit() == limits.MAX_PIXELS or os.environ.get(limits.PIXELS_ENV)
    assert math.isclose(limits.count_pixels((10_000, 10_000)), limits.MAX_PIXELS)
    assert sys.maxsize > limits.MAX_WIDTH**2


# -- 6. signals, for real: a subprocess receives them ----------------------------------------------
def _start(out: Path, images: Path, *extra: str):
    import signal as signals
    import subprocess

    cmd = [sys.executable, "-m", "inrkit.cli", "run", "--data", str(images), "--width", "8", "--layers", "3",
           "--out", str(out), "--no-progress", "--no-plots", *extra]
    # SIGINT at its default in the child, so that Python installs its KeyboardInterrupt handler even
    # when the tests run in the background (where the shell has children ignore SIGINT).
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signals.signal(signals.SIGINT, signals.SIG_DFL))


def _wait_for(predicate, proc, seconds: float = 120) -> None:
    import time

    deadline = time.time() + seconds
    while not predicate() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_a_real_sigterm_saves_a_snapshot_and_exits_143(images: Path, tmp_path: Path):
    import signal as signals

    out = tmp_path / "term"
    proc = _start(out, images, "--steps", "1000000", "--log", "jsonl", "--set", "train.log_every=1")
    log = out / "log.jsonl"
    _wait_for(lambda: log.exists() and '"event": "step"' in log.read_text(), proc)
    proc.send_signal(signals.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.count("Error:") == 1 and "snapshot was saved" in err and "Traceback" not in err, err
    assert torch.load(out / "resume.pt", weights_only=True)["step"] >= 1


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_a_real_ctrl_c_right_after_config_json_exits_130(images: Path, tmp_path: Path):
    import signal as signals

    out = tmp_path / "early"
    proc = _start(out, images, "--steps", "1000000")
    _wait_for(lambda: (out / "config.json").exists(), proc)
    proc.send_signal(signals.SIGINT)
    _, err = proc.communicate(timeout=120)
    # 130, or (about one run in six here) -SIGINT: CPython can remember an interrupt as unhandled
    # (likely one that passed through code a C extension ran, e.g. during an import) and, after
    # inrkit's message and cleanup, end the process by SIGINT itself; a shell reports 130 for both.
    assert proc.returncode in (130, -signals.SIGINT), err
    assert "Aborted" not in err and "Traceback" not in err and err.count("Error:") == 1, err
    # Either training had begun (a snapshot to resume) or the folder is marked failed (replaceable).
    assert (out / "resume.pt").is_file() or (out / "failed.json").is_file(), sorted(p.name for p in out.iterdir())
    if (out / "failed.json").is_file():
        with pytest.warns(RuntimeWarning, match="replacing the failed run"):
            again = cli("run", "--data", images, "--width", "8", "--steps", "1", "--out", out, "--no-progress")
        assert again.exit_code == 0, again.output
