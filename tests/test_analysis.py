"""``inrkit analyze weights``: the Figure-2 histograms and their numbers."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
from click.testing import CliRunner

import inrkit
from inrkit.analysis import analyze_weights
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
