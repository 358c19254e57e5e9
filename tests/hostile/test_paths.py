"""Paths: nothing written outside the output folder, whatever a name, a link or a file type says.

Part of the hardening suite (``tests/hostile/``, one module per subject); the helpers are in
``support.py``, the ``images`` and ``tiny_run`` fixtures in ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch
from conftest import entry_point, make_image
from support import TINY, cli, craft, files_under, items_meta, one_clean_error

import inrkit
from inrkit import images as image_io
from inrkit.errors import DataError

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
