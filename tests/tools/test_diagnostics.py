"""Layer diagnostics: statistics per layer, the `activations` callback and `inrkit analyze activations`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import inrkit
from inrkit.cli import main
from inrkit.tools.diagnostics import layer_statistics, sample_coords

SMALL = {"model": {"width": 16, "layers": 4}, "train": {"steps": 6, "device": "cpu"}}


def test_layer_statistics_see_every_layer_and_dead_units():
    model = inrkit.create_model("gauss", "minr", n_items=3, width=16, layers=4, seed=0)
    coords = sample_coords([(8, 8)] * 3, points=40)
    assert coords.shape == (3, 40, 2)
    stats = layer_statistics(model, coords)
    assert [s.layer for s in stats] == ["first", "projection", "hidden2", "hidden3", "last"]
    assert [s.shared for s in stats] == [False, False, True, True, False]
    for s in stats[:-1]:
        assert 0.0 <= s.alive_fraction <= 1.0 and 0.0 <= s.dead_units <= 1.0 and s.activation is not None
    assert stats[-1].activation is None and stats[-1].alive_fraction is None
    assert all(s.grad_norm is None for s in stats)  # no backward pass yet
    with torch.no_grad():  # push the projection's pre-activations far out of the Gaussian's reach
        model.items["projection"].bias.fill_(5.0)
        model.items["projection"].weight.zero_()
    dead = layer_statistics(model, coords)[1]
    assert dead.alive_fraction == 0.0 and dead.dead_units == 1.0 and dead.pre_activation.abs_mean == pytest.approx(5.0)


def test_complex_layers_are_measured_by_magnitude():
    model = inrkit.create_model("wire", "minr", n_items=2, width=16, layers=4, seed=0)
    stats = layer_statistics(model, sample_coords([(6, 6)] * 2, points=20))
    assert all(s.pre_activation.abs_mean > 0 for s in stats)


def test_the_activations_callback_logs_layers_and_changes_nothing(image_dir: Path, tmp_path: Path):
    plain = inrkit.fit(SMALL, data=[str(image_dir)], save=False)
    config = {**SMALL, "train": {**SMALL["train"], "callbacks": [{"name": "activations", "every": 2, "points": 50}]}}
    watched = inrkit.fit(config, data=[str(image_dir)], out=tmp_path / "r")
    assert watched.metrics.psnr_mean == plain.metrics.psnr_mean
    lines = [json.loads(line) for line in (tmp_path / "r" / "activations.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 2, 4, 6]
    assert [layer["layer"] for layer in lines[0]["layers"]] == ["first", "projection", "hidden2", "hidden3", "last"]
    assert lines[0]["layers"][0]["grad_norm"] is None and lines[-1]["layers"][0]["grad_norm"] > 0


def test_analyze_activations_reports_init_and_trained_with_gradients(image_dir: Path, tmp_path: Path):
    run = tmp_path / "run"
    inrkit.fit(SMALL, data=[str(image_dir)], out=run)
    result = CliRunner().invoke(main, ["analyze", "activations", str(run), "--points", "64", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["note"] is None and report["points_per_item"] == 64
    init, trained = report["init"], report["trained"]
    assert [r["layer"] for r in init] == [r["layer"] for r in trained]
    assert all(r["grad_norm"] > 0 for r in trained) and init[0]["weight_abs_mean"] != trained[0]["weight_abs_mean"]
    table = CliRunner().invoke(main, ["analyze", "activations", str(run), "--points", "64", "-o", str(tmp_path / "a.json")])
    assert table.exit_code == 0 and "alive" in table.output and (tmp_path / "a.json").is_file()
    shutil.rmtree(image_dir)  # the data has gone: statistics still, gradients left out with a note
    gone = CliRunner().invoke(main, ["analyze", "activations", str(run), "--points", "64", "--json"])
    assert gone.exit_code == 0
    assert "gradients left out" in json.loads(gone.output.split("Note:")[0])["note"]
