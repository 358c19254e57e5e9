"""Array data sets (``.npy``, ``.npz``) and class folders through the image signal.

Refusals of bad arrays are in ``tests/hostile/test_arrays.py``.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_composited_over_white_or_kept, half_transparent_red, make_image

from inrkit import arrays
from inrkit.cli import main
from inrkit.plugins import get_registry


def signal(name: str = "image", **options):
    return get_registry().get("signal", name)(options)


def stack(n: int, h: int = 8, w: int = 6, channels: int = 3) -> np.ndarray:
    return np.stack([make_image(h, w, seed=i, channels=channels) for i in range(n)])


def test_npy_uint8_items_are_named_by_index_and_hold_the_pixels(tmp_path: Path):
    data = stack(12)
    np.save(tmp_path / "set.npy", data)
    items = signal().load([str(tmp_path / "set.npy")])
    assert [it.name for it in items] == [f"set-{i:02d}" for i in range(12)]  # padded to the width of 11
    assert all(it.data.shape == (8, 6, 3) and it.data.dtype == np.float32 for it in items)
    np.testing.assert_array_equal(items[7].data, data[7].astype(np.float32) / 255.0)
    assert items[7].meta == {"source": str(tmp_path / "set.npy"), "index": 7, "bit_depth": 8, "channels": "rgb",
                             "original_shape": [8, 6]}
    # the same pixels as the same image loaded from a PNG, so 8-bit targets stay compact codes
    iio.imwrite(tmp_path / "seven.png", data[7])
    np.testing.assert_array_equal(signal().load([str(tmp_path / "seven.png")])[0].data, items[7].data)


def test_names_are_stable_and_unique_across_runs_and_sources(tmp_path: Path):
    np.save(tmp_path / "a.npy", stack(3))
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "b" / "a.npy", stack(2))
    sources = [str(tmp_path / "a.npy"), str(tmp_path / "b" / "a.npy")]
    first = [it.name for it in signal().load(sources)]
    assert first == ["a-0", "a-1", "a-2", "a-0-2", "a-1-2"]
    assert [it.name for it in signal().load(sources)] == first
    assert arrays.item_names("x", 1) == ["x-0"] and arrays.item_names("x", 101)[100] == "x-100"
    assert arrays.item_names("x", 100_000)[:2] == ["x-00000", "x-00001"]


def test_uint16_float_and_gray_arrays(tmp_path: Path):
    deep = (stack(2).astype(np.uint16) * 257).astype(">u2")  # big-endian, as another machine may write it
    np.save(tmp_path / "deep.npy", deep)
    item = signal().load([str(tmp_path / "deep.npy")])[1]
    assert item.meta["bit_depth"] == 16
    np.testing.assert_allclose(item.data, deep[1].astype(np.float32) / 65535.0, atol=1e-7)

    values = np.random.default_rng(0).random((3, 5, 4, 3))
    for dtype in (np.float16, np.float32, np.float64):
        np.save(tmp_path / "f.npy", values.astype(dtype))
        got = signal().load([str(tmp_path / "f.npy")])
        np.testing.assert_allclose(got[2].data, values[2].astype(dtype).astype(np.float32))
        assert got[2].meta["bit_depth"] == 8

    gray = stack(4, channels=1)[..., 0]  # (N, H, W)
    np.save(tmp_path / "gray.npy", gray)
    items = signal().load([str(tmp_path / "gray.npy")])
    assert items[0].channels == 1 and items[0].meta["channels"] == "gray"
    np.testing.assert_array_equal(items[3].data[..., 0], gray[3] / np.float32(255))
    assert signal(channels="rgb").load([str(tmp_path / "gray.npy")])[0].channels == 3


def test_channel_modes_and_max_side_apply_as_to_image_files(tmp_path: Path):
    rgba = half_transparent_red(2)
    np.save(tmp_path / "rgba.npy", rgba)
    assert_composited_over_white_or_kept(lambda channels: signal(channels=channels).load([str(tmp_path / "rgba.npy")])[1])
    iio.imwrite(tmp_path / "one.png", rgba[0])
    for mode in ("gray", "rgb", "rgba"):
        from_png = signal(channels=mode).load([str(tmp_path / "one.png")])[0].data
        np.testing.assert_allclose(signal(channels=mode).load([str(tmp_path / "rgba.npy")])[0].data, from_png, atol=1e-6)

    big = stack(3, 32, 16)
    np.save(tmp_path / "big.npy", big)
    small = signal(max_side=8).load([str(tmp_path / "big.npy")])
    assert [it.shape for it in small] == [(8, 4)] * 3 and small[0].meta["original_shape"] == [32, 16]
    iio.imwrite(tmp_path / "big2.png", big[2])
    np.testing.assert_allclose(small[2].data, signal(max_side=8).load([str(tmp_path / "big2.png")])[0].data, atol=1e-6)


def test_auto_channels_mix_arrays_and_files(tmp_path: Path):
    np.save(tmp_path / "gray.npy", stack(2, channels=1))
    iio.imwrite(tmp_path / "c.png", make_image(8, 6))
    items = signal().load([str(tmp_path / "gray.npy"), str(tmp_path / "c.png")])
    assert [it.channels for it in items] == [3, 3, 3]  # one RGB source makes every item RGB
    assert [it.name for it in items] == ["gray-0", "gray-1", "c"]


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "compressed"])
def test_npz_with_and_without_key(tmp_path: Path, compressed: bool):
    save = np.savez_compressed if compressed else np.savez
    train, test = stack(5), stack(2, 4, 4)
    save(tmp_path / "one.npz", images=train)
    save(tmp_path / "two.npz", train=train, test=test)
    items = signal().load([str(tmp_path / "one.npz")])
    assert [it.name for it in items] == [f"one-{i}" for i in range(5)]
    np.testing.assert_array_equal(items[4].data, train[4] / np.float32(255))
    assert items[4].meta["key"] == "images" and items[4].meta["index"] == 4
    chosen = signal(key="test").load([str(tmp_path / "two.npz")])
    assert [it.shape for it in chosen] == [(4, 4), (4, 4)]
    np.testing.assert_array_equal(chosen[1].data, test[1] / np.float32(255))
    source = arrays.open_array(tmp_path / "one.npz")
    assert (source.offset is None) == compressed  # stored members are memory-mapped at their offset


def test_a_float_npz_is_read_and_checked_in_chunks(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(arrays, "CHUNK_BYTES", 1024)  # many chunks: one image of 16x16x3 float32 each
    values = np.random.default_rng(1).random((7, 16, 16, 3)).astype(np.float32)
    for name, save in (("s.npz", np.savez), ("c.npz", np.savez_compressed)):
        save(tmp_path / name, values)
        items = signal().load([str(tmp_path / name)])
        np.testing.assert_array_equal(np.stack([it.data for it in items]), values)


def test_items_are_views_of_one_array_and_the_file_is_never_read_whole(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(arrays, "CHUNK_BYTES", 64 * 1024)
    data = stack(400, 32, 32)  # 1.2 MB stored, 4.9 MB as float32
    np.save(tmp_path / "set.npy", data)
    tracemalloc.start()
    try:
        items = signal().load([str(tmp_path / "set.npy")])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result, stored = 400 * 32 * 32 * 3 * 4, data.nbytes
    base = items[0].data.base
    assert base is not None and all(it.data.base is base for it in items) and base.nbytes == result
    # numpy reports its allocations to tracemalloc: the float32 result plus one chunk's
    # temporaries (about 0.3 MB), never a copy of the stored array (1.2 MB) or of the result
    assert peak < result + stored // 2, (peak, result)


def test_only_the_header_is_read_before_conversion(tmp_path: Path):
    np.save(tmp_path / "set.npy", stack(3))
    source = arrays.open_array(tmp_path / "set.npy")
    assert (source.count, source.size, source.channels, source.dtype) == (3, (8, 6), 3, np.uint8)
    assert source.offset is not None and source.offset % 64 == 0 and source.key is None


def test_a_glob_picks_arrays_but_a_folder_does_not(tmp_path: Path):
    iio.imwrite(tmp_path / "a.png", make_image(8, 6))
    np.save(tmp_path / "labels.npy", np.arange(10))  # not images: a folder source must not try it
    assert [it.name for it in signal().load([str(tmp_path)])] == ["a"]
    np.save(tmp_path / "set.npy", stack(2))
    assert [it.name for it in signal().load([str(tmp_path / "s*.npy")])] == ["set-0", "set-1"]


def test_superres_loads_arrays_too(tmp_path: Path):
    np.save(tmp_path / "set.npy", stack(2, 16, 16))
    items = signal("superres", scale=2).load([str(tmp_path / "set.npy")])
    assert [it.meta["low_res"].shape for it in items] == [(8, 8, 3)] * 2


def test_cli_run_on_a_tiny_npy_end_to_end(tmp_path: Path):
    np.save(tmp_path / "tiny.npy", stack(3, 8, 8))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "run", "--data", str(tmp_path / "tiny.npy"), "--sharing", "minr", "--width", "8", "--layers", "3",
        "--steps", "2", "--set", "train.items_per_step=2", "--no-plots", "--no-progress", "--json", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert [item["name"] for item in metrics["items"]] == ["tiny-0", "tiny-1", "tiny-2"]
    assert sorted(p.name for p in (out / "recon").iterdir()) == ["tiny-0.png", "tiny-1.png", "tiny-2.png"]
    params = CliRunner().invoke(main, ["params", "--data", str(tmp_path / "tiny.npy"), "--width", "8", "--memory", "--json"])
    assert params.exit_code == 0, params.output
    assert json.loads(params.output)["memory_parts"]["items"] == 3 * 8 * 8 * 3 * 4


# -- class folders (torchvision's ImageFolder layout) --------------------------------------------
def class_tree(root: Path) -> Path:
    for label, count in (("dog", 2), ("cat", 3), (".thumbs", 1)):
        (root / label).mkdir(parents=True)
        for i in range(count):
            iio.imwrite(root / label / f"im{i}.png", make_image(6, 6, seed=i))
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not an image")
    return root


def test_class_folders_keep_the_class_in_name_and_meta(tmp_path: Path):
    items = signal().load([str(class_tree(tmp_path / "tree"))])
    assert [it.name for it in items] == ["cat-im0", "cat-im1", "cat-im2", "dog-im0", "dog-im1"]
    assert [it.meta["class"] for it in items] == ["cat"] * 3 + ["dog"] * 2
    assert items[3].meta["source"] == str(tmp_path / "tree" / "dog" / "im0.png")


def test_a_folder_with_images_of_its_own_ignores_its_subfolders(tmp_path: Path):
    root = class_tree(tmp_path / "tree")
    iio.imwrite(root / "top.png", make_image(6, 6))
    items = signal().load([str(root)])
    assert [it.name for it in items] == ["top"] and "class" not in items[0].meta


def test_class_links_count_once_and_odd_class_names_are_made_safe(tmp_path: Path):
    root = class_tree(tmp_path / "tree")
    (root / "zebra").symlink_to(root / "cat")  # a second path to the cat folder
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    (root / "bad:name\x07").mkdir()
    iio.imwrite(root / "bad:name\x07" / "x.png", make_image(6, 6))
    items = signal().load([str(root)])
    names = [it.name for it in items]
    assert names == ["bad_name_-x", "cat-im0", "cat-im1", "cat-im2", "dog-im0", "dog-im1"]
    assert items[0].meta["class"] == "bad:name\x07"


@pytest.mark.parametrize("save", [np.save, np.savez, np.savez_compressed], ids=["npy", "stored", "compressed"])
def test_fortran_ordered_arrays_read_as_their_values(tmp_path: Path, save):
    data = stack(4)
    save(tmp_path / ("f.npy" if save is np.save else "f.npz"), np.asfortranarray(data))
    path = tmp_path / ("f.npy" if save is np.save else "f.npz")
    assert arrays.open_array(path).fortran_order
    np.testing.assert_array_equal(np.stack([it.data for it in signal().load([str(path)])]), data / np.float32(255))


def test_items_of_mixed_channels_are_named_by_kind_not_one_by_one():
    from inrkit.errors import DataError
    from inrkit.interfaces import Item
    from inrkit.runs.fit import check_items

    items = [Item(name=f"rgb-{i}", data=np.zeros((2, 2, 3), np.float32)) for i in range(5000)]
    items.append(Item(name="gray", data=np.zeros((2, 2, 1), np.float32)))
    with pytest.raises(DataError) as caught:
        check_items(items, "custom")
    message = str(caught.value)
    assert "5,000 like rgb-0: (2, 2, 3)" in message and "1 like gray: (2, 2, 1)" in message and len(message) < 300
