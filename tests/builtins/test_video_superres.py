"""The video and super-resolution signals."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_image

from inrkit.cli import main
from inrkit.errors import DataError
from inrkit.plugins import get_registry


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    frames = np.stack([np.roll(make_image(16, 24, seed=0), 2 * t, axis=1) for t in range(8)])
    path = tmp_path / "clip.mp4"
    iio.imwrite(path, frames, plugin="pyav", codec="libx264", fps=10)
    return path


def video(**options):
    return get_registry().get("signal", "video")(options)


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.slow
def test_video_frames_are_items(clip: Path):
    items = video(start=1, frames=3, stride=2).load([str(clip)])
    assert [it.name for it in items] == ["frame00001", "frame00003", "frame00005"]
    assert items[0].shape == (16, 24) and items[0].channels == 3 and items[0].meta["fps"] == 10.0
    assert len(video().load([str(clip)])) == 8
    assert video(max_side=12).load([str(clip)])[0].shape == (8, 12)


def test_video_from_a_folder_of_frames(tmp_path: Path):
    for t in range(5):
        iio.imwrite(tmp_path / f"f{t:03d}.png", make_image(10, 12, seed=t))
    items = video(stride=2).load([str(tmp_path)])
    assert [it.meta["frame"] for it in items] == [0, 2, 4]


@pytest.mark.slow
def test_video_run_writes_frames_video_and_metrics(clip: Path, tmp_path: Path):
    out = tmp_path / "run"
    result = cli("run", "--signal", "video", "--data", str(clip), "--set", "signal.frames=4", "--sharing", "minr",
                 "--width", "32", "--steps", "5", "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "recon" / "frames").iterdir()) == [f"frame0000{i}.png" for i in range(4)]
    assert iio.improps(out / "recon" / "video.mp4", plugin="pyav").shape[0] == 4
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["items"]) == 4 and metrics["params"]["shared"] > 0


@pytest.mark.parametrize(
    "options, make_source, message",
    [
        ({}, lambda t, c: str(t / "missing.mp4"), "no such file or folder"),
        ({}, lambda t, c: (t / "x.mp4").write_text("not a video") and str(t / "x.mp4"), "cannot read video"),
        ({"start": 8}, lambda t, c: str(c), "past the end"),
        ({"frames": 9}, lambda t, c: str(c), "only 8, not frames=9"),
        ({"start": 2, "stride": 3, "frames": 3}, lambda t, c: str(c), "only 2, not frames=3"),
    ],
    ids=["missing", "not-a-video", "start-past-end", "too-many-frames", "stride-past-end"],
)
def test_video_bad_input(tmp_path: Path, clip: Path, options, make_source, message):
    with pytest.raises(DataError, match=message):
        video(**options).load([make_source(tmp_path, clip)])
    with pytest.raises(DataError, match="exactly one source"):
        video().load([str(clip), str(clip)])


def test_superres_trains_low_and_scores_full_size(tmp_path: Path):
    iio.imwrite(tmp_path / "a.png", make_image(32, 24, seed=3))
    signal = get_registry().get("signal", "superres")({"scale": 4})
    item = signal.load([str(tmp_path / "a.png")])[0]
    assert signal.train_view(item).shape == (8, 6, 3) and signal.eval_view(item).shape == (32, 24, 3)
    extra = signal.extra_metrics(item)
    assert 10 < extra["bicubic_psnr"] < 60 and 0 < extra["bicubic_ssim"] <= 1

    out = tmp_path / "sr"
    result = cli("run", "--signal", "superres", "--set", "signal.scale=2", "--data", str(tmp_path / "a.png"),
                 "--width", "32", "--steps", "20", "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "bicubic_psnr" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["items"][0]["shape"] == [32, 24] and "bicubic_psnr_mean" in metrics
    assert iio.imread(out / "recon" / "a.png").shape == (32, 24, 3)


@pytest.mark.parametrize("scale", ["0", "1", "-2"])
def test_superres_rejects_scales_below_two(image_dir: Path, scale: str):
    result = cli("run", "--signal", "superres", "--set", f"signal.scale={scale}", "--data", str(image_dir))
    assert result.exit_code != 0 and "signal.scale" in result.output and "Traceback" not in result.output
