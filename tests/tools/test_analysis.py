"""``inrkit analyze weights``: the Figure-2 histograms and their numbers."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
from click.testing import CliRunner

import inrkit
from inrkit.tools.analysis import analyze_weights
from inrkit.cli import main


def test_analyze_weights_figure_and_numbers(image_dir: Path, tmp_path: Path):
    sep = inrkit.fit({"sharing": {"name": "separate"}, "model": {"width": 16, "layers": 4}, "train": {"steps": 5}},
                     data=[str(image_dir)], out=tmp_path / "sep").run_dir
    minr = inrkit.fit({"model": {"width": 16, "layers": 4}, "train": {"steps": 5}}, data=[str(image_dir)], out=tmp_path / "minr").run_dir
    report = analyze_weights([sep])
    assert [layer["layer"] for layer in report["layers"]] == ["first", "hidden2", "hidden3", "last"]
    first = report["layers"][0]
    assert first["curves"] == 4 and set(first["per_curve"]) == {f"sep/img{i}" for i in range(4)}
    assert first["per_curve"]["sep/img0"]["count"] == 2 * 16
    assert -1.4 < first["excess_kurtosis_mean"] < -1.0  # still close to its uniform initialisation
    assert report["middle_layers_more_alike"] in (True, False)
    shared = analyze_weights([minr])["layers"]
    assert [(layer["layer"], layer["curves"]) for layer in shared] == [
        ("first", 4), ("projection", 4), ("hidden2", 1), ("hidden3", 1), ("last", 4)
    ]

    out = tmp_path / "fig" / "weights.png"
    result = CliRunner().invoke(main, ["analyze", "weights", str(sep), str(minr), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert iio.imread(out).ndim == 3
    numbers = json.loads(out.with_suffix(".json").read_text())
    assert numbers["runs"] == [str(sep), str(minr)] and "hidden layers more alike" in result.output
    again = CliRunner().invoke(main, ["analyze", "weights", str(sep), "-o", str(out)])
    assert again.exit_code != 0 and "already exist" in again.output
    bad = CliRunner().invoke(main, ["analyze", "weights", str(tmp_path / "nope"), "-o", str(tmp_path / "x.png")])
    assert bad.exit_code != 0 and "run folder not found" in bad.output and "Traceback" not in bad.output


def test_run_plots_on_request_and_off_in_tests(image_dir: Path, tmp_path: Path, monkeypatch):
    args = ["run", "--data", str(image_dir / "img0.png"), "--width", "8", "--steps", "3", "--no-progress"]
    assert CliRunner().invoke(main, [*args, "--out", str(tmp_path / "off")]).exit_code == 0
    assert not (tmp_path / "off" / "plots").exists()  # INRKIT_PLOTS=0 in tests
    monkeypatch.setenv("INRKIT_PLOTS", "1")
    assert CliRunner().invoke(main, [*args, "--out", str(tmp_path / "on")]).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "on" / "plots").iterdir()) == ["reconstructions.png", "training.png"]
    assert CliRunner().invoke(main, [*args, "--no-plots", "--out", str(tmp_path / "no")]).exit_code == 0
    assert not (tmp_path / "no" / "plots").exists()


def test_superres_plots_include_detail_crops(image_dir: Path, tmp_path: Path):
    result = inrkit.fit({"signal": {"name": "superres", "scale": 2}, "model": {"width": 8}, "train": {"steps": 2}},
                        data=[str(image_dir / "img1.png")], out=tmp_path / "sr", plots=True)
    assert (result.run_dir / "plots" / "crops.png").is_file()


def test_detail_boxes_find_the_textured_region():
    import numpy as np

    from inrkit.runs.plots import detail_boxes

    image = np.zeros((60, 60, 3))
    image[40:50, 5:15] = np.indices((10, 10)).sum(0)[..., None] % 2  # a checkerboard patch
    (r, c, side), *_ = detail_boxes(image, count=1, size=10)
    assert abs(r - 40) <= 2 and abs(c - 5) <= 2 and side == 10
