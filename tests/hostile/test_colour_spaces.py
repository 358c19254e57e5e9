"""Colour spaces: converted to RGB, never misread; what cannot be converted is refused.

Part of the hardening suite (``tests/hostile/``, one module per subject); the helpers are in
``support.py``, the ``images`` and ``tiny_run`` fixtures in ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import make_image
from support import cli, one_clean_error

import inrkit
from inrkit import images as image_io
from inrkit.errors import DataError


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
