"""The image signal's loading rules: formats, channels, bit depths, sizes, sources."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import assert_composited_over_white_or_kept, half_transparent_red, make_image

from inrkit.errors import DataError
from inrkit.images import read_image, write_image
from inrkit.plugins import get_registry


def signal(**options):
    return get_registry().get("signal", "image")(options)


def test_folder_glob_and_file_sources(image_dir: Path):
    assert [it.name for it in signal().load([str(image_dir)])] == ["img0", "img1", "img2", "img3"]
    assert len(signal().load([str(image_dir / "img*.png")])) == 4
    items = signal().load([str(image_dir / "img2.png")])
    assert items[0].data.shape == (24, 24, 3) and items[0].data.dtype == np.float32
    assert 0.0 <= items[0].data.min() and items[0].data.max() <= 1.0


def test_jpeg_and_mixed_sizes(tmp_path: Path):
    iio.imwrite(tmp_path / "a.jpg", make_image(20, 30))
    iio.imwrite(tmp_path / "b.png", make_image(16, 12))
    items = signal().load([str(tmp_path)])
    assert [it.shape for it in items] == [(20, 30), (16, 12)]


def test_grayscale_alone_stays_gray_and_mixed_becomes_rgb(tmp_path: Path):
    gray = make_image(10, 10, channels=1)[..., 0]
    iio.imwrite(tmp_path / "g.png", gray)
    only = signal().load([str(tmp_path / "g.png")])[0]
    assert only.channels == 1
    np.testing.assert_allclose(only.data[..., 0], gray / 255.0, atol=1e-6)
    iio.imwrite(tmp_path / "c.png", make_image(10, 10))
    mixed = signal().load([str(tmp_path)])
    assert {it.channels for it in mixed} == {3}
    np.testing.assert_allclose(mixed[1].data[..., 2], gray / 255.0, atol=1e-6)  # gray repeated
    assert signal(channels="gray").load([str(tmp_path / "c.png")])[0].channels == 1


def test_rgba_is_composited_over_white_or_kept(tmp_path: Path):
    iio.imwrite(tmp_path / "a.png", half_transparent_red())
    assert_composited_over_white_or_kept(lambda channels: signal(channels=channels).load([str(tmp_path / "a.png")])[0])


def test_sixteen_bit_is_scaled_and_written_back_at_sixteen_bits(tmp_path: Path):
    arr = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    iio.imwrite(tmp_path / "deep.png", arr)
    item = signal().load([str(tmp_path / "deep.png")])[0]
    assert item.meta["bit_depth"] == 16
    np.testing.assert_allclose(item.data[..., 0], arr / 65535.0, atol=1e-6)
    out = signal().save(item, item.data, tmp_path / "out")[0]
    back = iio.imread(out)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, arr)


def test_sixteen_bit_colour_round_trip(tmp_path: Path):
    values = np.random.default_rng(0).random((5, 7, 3)).astype(np.float32)
    path = write_image(tmp_path / "c.png", values, bit_depth=16)
    back = read_image(path)
    assert back.dtype == np.uint16 and back.shape == (5, 7, 3)
    np.testing.assert_allclose(back / 65535.0, values, atol=1 / 65535)
    item = get_registry().get("signal", "image")().load([str(path)])[0]
    assert item.meta["bit_depth"] == 16 and item.channels == 3


def test_max_side_downscales_antialiased_and_never_upscales(tmp_path: Path):
    checker = (np.indices((64, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "c.png", checker)
    small = signal(max_side=16).load([str(tmp_path / "c.png")])[0]
    assert small.shape == (16, 8)
    assert abs(float(small.data.mean()) - 0.5) < 0.05
    assert small.data.std() < 0.1  # a checkerboard averages out; aliasing would keep it
    assert signal(max_side=500).load([str(tmp_path / "c.png")])[0].shape == (64, 32)


def test_built_in_samples_are_small_by_default():
    items = signal().load([])
    assert [it.name for it in items] == ["astronaut", "coffee", "chelsea", "rocket"]
    assert all(max(it.shape) == 128 for it in items)


def test_duplicate_names_are_made_unique(tmp_path: Path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        iio.imwrite(tmp_path / sub / "x.png", make_image(6, 6))
    items = signal().load([str(tmp_path / "a"), str(tmp_path / "b")])
    assert [it.name for it in items] == ["x", "x-2"]


def test_repeated_names_never_collide(tmp_path: Path):
    for sub, name in (("d1", "a"), ("d2", "a"), ("d3", "a-2")):
        (tmp_path / sub).mkdir()
        iio.imwrite(tmp_path / sub / f"{name}.png", make_image(6, 6))
    items = get_registry().get("signal", "image")().load([str(tmp_path / d) for d in ("d1", "d2", "d3")])
    names = [it.name for it in items]
    assert len(set(names)) == 3 and names == ["a", "a-3", "a-2"]


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: str(p / "missing.png"), "no such file or folder"),
        (lambda p: (p / "empty").mkdir() or str(p / "empty"), "holds no images"),
        (lambda p: (p / "bad.png").write_bytes(b"not a png at all") and str(p / "bad.png"), "cannot read image"),
        (lambda p: str(p / "*.nothing"), "no files match"),
        (lambda p: "sample:nonexistent", "unknown sample image"),
    ],
    ids=["missing", "empty-folder", "corrupt", "glob-no-match", "bad-sample"],
)
def test_bad_sources_raise_data_error_naming_the_cause(tmp_path: Path, setup, message):
    source = setup(tmp_path)
    with pytest.raises(DataError, match=message):
        signal().load([source])


def test_files_are_read_in_threads_in_order_and_the_first_bad_one_is_named(tmp_path: Path):
    from PIL import Image

    from inrkit.images import read_in_threads, read_pixels

    paths = []
    for i in range(12):
        iio.imwrite(tmp_path / f"img{i:02d}.png", np.full((3 + i, 4, 3), i * 10, dtype=np.uint8))
        paths.append(str(tmp_path / f"img{i:02d}.png"))
    before = Image.MAX_IMAGE_PIXELS
    arrays = read_in_threads(read_pixels, paths, workers=4)
    assert [a.shape[0] for a in arrays] == [3 + i for i in range(12)] and [int(a[0, 0, 0]) for a in arrays] == [i * 10 for i in range(12)]
    assert Image.MAX_IMAGE_PIXELS == before, "Pillow's own limit is back once every thread is done"
    (tmp_path / "img05.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "img09.png").write_bytes(b"\x89PNG\r\n\x1a\n broken too")
    with pytest.raises(DataError, match="img05.png"):
        read_in_threads(read_pixels, paths, workers=4)
    assert Image.MAX_IMAGE_PIXELS == before


def test_loading_many_files_shows_a_bar_only_when_the_run_shows_progress(capsys: pytest.CaptureFixture[str]):
    from inrkit.images import PROGRESS_MIN_FILES, loading_progress, read_in_threads

    paths = [f"f{i}" for i in range(PROGRESS_MIN_FILES)]
    assert read_in_threads(str.upper, paths) == [p.upper() for p in paths]
    assert capsys.readouterr().err == ""
    with loading_progress(True):
        assert read_in_threads(str.upper, paths, workers=2) == [p.upper() for p in paths]
        read_in_threads(str.upper, paths[:3])  # a handful of files: no bar
    err = capsys.readouterr().err
    assert "loading" in err and f"/{PROGRESS_MIN_FILES}" in err and err.count("loading:") >= 1
    with loading_progress(True):
        read_in_threads(str.upper, paths[:3])
    assert capsys.readouterr().err == ""
