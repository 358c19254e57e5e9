"""The paper's baselines (canvas concatenation, item ID, COIN++) and ``inrkit compare``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import inrkit
from inrkit import api
from inrkit.cli import main
from inrkit.experiments.compare import parse_variant, variant_config
from inrkit.config import ResolvedRun
from inrkit.coords import grid
from inrkit.errors import ConfigError
from inrkit.factory import build_model, run_spec


def build(sharing: str, shapes, width: int = 8, layers: int = 4, **spec):
    config = api.as_config({"sharing": {"name": sharing}, "model": {"width": width, "layers": layers}})
    resolved = ResolvedRun(config)
    return build_model(resolved.activation, resolved.sharing, run_spec(config, 2, shapes, 3, **spec))


def counts(sharing: str, **options) -> int:
    return api.parameter_counts({"sharing": {"name": sharing, **options}}, n_items=4).total


def test_single_network_baselines_are_the_size_of_one_siren():
    for name in ("row", "column", "grid"):
        assert counts(name) == 198_915
    assert counts("id") == 199_171
    c = api.parameter_counts({"sharing": {"name": "coinpp", "latent_dim": 32}}, n_items=4)
    assert c.per_item == 32 and c.shared == 198_915 + 32 * 4 * 256 + 4 * 256


@pytest.mark.parametrize(
    "arrangement, cell_of",
    [("row", lambda i: (0, i)), ("column", lambda i: (i, 0)), ("grid", lambda i: divmod(i, 2))],
)
def test_canvas_coordinates_are_the_concatenated_image_pixels(arrangement, cell_of):
    shapes = [(4, 6), (3, 5), (4, 6)]
    model = build(arrangement, shapes)
    cell_h, cell_w = 4, 6
    canvas = grid(model.canvas_shape).reshape(*model.canvas_shape, 2)
    for i, shape in enumerate(shapes):
        mapped = model.map_coords(grid(shape).unsqueeze(0), torch.tensor([i]))[0].reshape(*shape, 2)
        r, c = cell_of(i)
        expected = canvas[r * cell_h : r * cell_h + shape[0], c * cell_w : c * cell_w + shape[1]]
        torch.testing.assert_close(mapped, expected)
    # A one-item model (decoding) maps the same way, given the run's shapes.
    single = build(arrangement, [shapes[1]], item_indices=(1,), run_item_shapes=tuple(shapes))
    torch.testing.assert_close(single.map_coords(grid(shapes[1]).unsqueeze(0)), model.map_coords(grid(shapes[1]).unsqueeze(0), torch.tensor([1])))


def test_id_appends_the_normalised_item_index():
    model = build("id", [(2, 2)] * 3)
    mapped = model.map_coords(torch.zeros(3, 4, 2))
    assert mapped.shape == (3, 4, 3)
    assert mapped[:, 0, 2].tolist() == [-1.0, 0.0, 1.0]
    single = build("id", [(2, 2)], item_indices=(2,), run_item_shapes=((2, 2),) * 3)
    assert single.map_coords(torch.zeros(1, 1, 2))[0, 0, 2].item() == 1.0
    assert model.items.keys() == set() and "first" in model.shared


def test_coinpp_meta_learns_and_stores_per_item_latents(image_dir: Path, tmp_path: Path):
    config = {
        "sharing": {"name": "coinpp", "latent_dim": 8, "inner_steps": 2},
        "model": {"width": 32, "layers": 3},
        "train": {"steps": 8, "lr": 1e-3},
    }
    result = inrkit.fit(config, data=[str(image_dir)], out=tmp_path / "c")
    codes = result.model.items["latent"].codes
    assert codes.shape == (4, 8) and not codes.requires_grad
    assert codes.abs().sum() > 0 and not torch.allclose(codes[0], codes[1])
    run = inrkit.load(result.run_dir)
    np.testing.assert_allclose(run.decode(3), result.reconstructions[3], atol=1e-5)
    assert run.metrics["params"]["per_item"] == 8


def test_coinpp_inner_loop_reaches_the_base_network():
    from inrkit.training.points import PointSet
    from inrkit.training.trainer import ChunkedStep

    rng = np.random.default_rng(0)
    points = PointSet.from_arrays([rng.random((5, 5, 3), dtype=np.float32) for _ in range(2)])
    for first_order in (False, True):
        torch.manual_seed(0)
        config = api.as_config({"sharing": {"name": "coinpp", "latent_dim": 4, "first_order": first_order}, "model": {"width": 8, "layers": 3}})
        model = inrkit.create_model(sharing="coinpp", n_items=2, width=8, layers=3, sharing_options={"latent_dim": 4, "first_order": first_order})
        per_item = model.training_step(ChunkedStep(model, points, points.chunks(10)))
        assert per_item.shape == (2,) and torch.isfinite(per_item).all()
        assert model.shared["modulation"].weight.grad.abs().sum() > 0  # through the inner loop
        assert model.shared["first"].weight.grad.abs().sum() > 0
        assert model.items["latent"].codes.grad is None


def test_parse_variant_keeps_commas_inside_values():
    v = parse_variant("w/o sharing 2nd:sharing.name=minr,sharing.shared_layers=[3, 4]")
    assert v.name == "w/o sharing 2nd" and v.assignments == ("sharing.name=minr", "sharing.shared_layers=[3, 4]")
    assert v.folder_name == "w-o-sharing-2nd"
    for bad in ("no-colon", ":a=1", "name:", "name:justtext"):
        with pytest.raises(ConfigError):
            parse_variant(bad)


def test_variant_switching_strategy_drops_other_strategy_options():
    base = {"sharing": {"name": "minr", "projection": False}}
    assert variant_config(base, parse_variant("s:sharing.name=separate"))["sharing"] == {"name": "separate"}
    assert variant_config(base, parse_variant("m:sharing.name=minr"))["sharing"] == {"name": "minr", "projection": False}


def test_compare_runs_all_seven_methods_end_to_end(image_dir: Path, tmp_path: Path):
    out = tmp_path / "cmp"
    methods = "separate,minr,row,column,grid,id,coinpp"
    result = CliRunner().invoke(
        main,
        [
            "compare", "--data", str(image_dir), "--sharing", methods,
            "--variant", "minr w/o projection:sharing.name=minr,sharing.projection=false",
            "--width", "16", "--layers", "3", "--steps", "4", "--set", "train.lr=1e-3",
            "--out", str(out), "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "table.json").read_text())
    assert [r["method"] for r in rows] == methods.split(",") + ["minr w/o projection"]
    for row in rows:
        for key in ("sharing", "params", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "seconds"):
            assert key in row
        assert (out / row["run_dir"] / "checkpoint.safetensors").is_file()
    table = (out / "table.md").read_text()
    assert table.startswith("| Method | Params (M) | PSNR (dB) | PSNR of mean MSE (dB) | SSIM | MS-SSIM | Seconds |")
    assert "| coinpp |" in table and "| minr w/o projection |" in table
    by = {r["method"]: r for r in rows}
    assert by["row"]["params"] == by["column"]["params"] == by["grid"]["params"] == by["id"]["params"] - 16


def test_compare_validates_every_variant_before_fitting(image_dir: Path, tmp_path: Path):
    out = tmp_path / "bad"
    result = CliRunner().invoke(
        main,
        ["compare", "--data", str(image_dir), "--sharing", "minr", "--variant", "x:sharing.name=row,sharing.projection=false", "--width", "8", "--steps", "1", "--out", str(out)],
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "sharing.projection: unknown key" in result.output and not out.exists()
    result = CliRunner().invoke(main, ["compare", "--data", str(image_dir), "--sharing", "minr,nope"])
    assert result.exit_code != 0 and "valid sharing names" in result.output
    result = CliRunner().invoke(main, ["compare", "--data", str(image_dir)])
    assert result.exit_code != 0 and "nothing to compare" in result.output


def test_base_sharing_options_apply_to_their_own_strategy_only():
    base = {"sharing": {"projection": False}}
    assert variant_config(base, parse_variant("m:sharing.name=minr"))["sharing"] == {"projection": False, "name": "minr"}
    assert variant_config(base, parse_variant("r:sharing.name=row"))["sharing"] == {"name": "row"}
