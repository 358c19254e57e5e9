"""Run configuration: dotted overrides, files, plugin option validation, the demo preset."""

from __future__ import annotations

import pytest

from inrkit import api
from inrkit.config import DEMO_STEPS, ResolvedRun, apply_overrides, parse_value, read_config_file
from inrkit.errors import ConfigError


def test_parse_value_reads_json_else_text():
    assert parse_value("3") == 3 and parse_value("1e-4") == 1e-4
    assert parse_value("false") is False and parse_value("[2, 3]") == [2, 3]
    assert parse_value("cuda:0") == "cuda:0"


def test_apply_overrides_builds_nested_sections_without_touching_input():
    base = {"train": {"steps": 5}}
    out = apply_overrides(base, ["train.lr=0.001", "sharing.projection=false", "activation.omega=20"])
    assert out == {"train": {"steps": 5, "lr": 0.001}, "sharing": {"projection": False}, "activation": {"omega": 20}}
    assert base == {"train": {"steps": 5}}
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"data": "x"}, ["data.y=1"])


def test_plugin_section_without_name_keeps_default_plugin():
    config = api.as_config(apply_overrides({}, ["signal.max_side=32", "sharing.projection=false"]))
    assert config.signal.name == "image" and config.signal.options == {"max_side": 32}
    assert config.sharing.name == "minr"
    resolved = ResolvedRun(config)
    assert resolved.signal.options.max_side == 32 and resolved.sharing.options.projection == "none"


def test_normalized_config_spells_out_every_option():
    resolved = ResolvedRun(api.as_config({}))
    saved = resolved.normalized_config()
    assert saved.activation.options == {"omega": 30.0, "first_omega": None, "init_scale": 1.0}
    assert saved.sharing.options == {"projection": "full", "rank": None, "shared_layers": None}


def test_read_config_file_formats_and_errors(tmp_path):
    (tmp_path / "a.toml").write_text('[train]\nsteps = 7\n')
    assert read_config_file(tmp_path / "a.toml") == {"train": {"steps": 7}}
    (tmp_path / "b.yml").write_text("train:\n  steps: 8\n")
    assert read_config_file(tmp_path / "b.yml") == {"train": {"steps": 8}}
    (tmp_path / "c.toml").write_text("[train\n")
    with pytest.raises(ConfigError, match="could not be parsed"):
        read_config_file(tmp_path / "c.toml")
    (tmp_path / "d.ini").write_text("x")
    with pytest.raises(ConfigError, match="unknown format"):
        read_config_file(tmp_path / "d.ini")
    (tmp_path / "e.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        read_config_file(tmp_path / "e.yaml")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"train": {"lr": 0}}, "train.lr"),
        ({"train": {"lr_final_ratio": 2}}, "train.lr_final_ratio"),
        ({"train": {"chunk_points": 0}}, "train.chunk_points"),
        ({"model": {"layers": 1}}, "model.layers"),
        ({"model": {"width": 0}}, "model.width"),
        ({"bogus": 1}, "bogus: unknown key"),
    ],
)
def test_invalid_values_are_named(data, message):
    with pytest.raises(ConfigError, match=message):
        api.as_config(data)


def test_demo_preset_only_without_data_and_without_explicit_steps():
    config, notes = api.apply_demo_preset(api.as_config({}))
    assert config.train.steps == DEMO_STEPS and notes
    config, notes = api.apply_demo_preset(api.as_config({"train": {"steps": 300}}))
    assert config.train.steps == 300 and not notes
    config, notes = api.apply_demo_preset(api.as_config({"data": ["x.png"]}))
    assert config.train.steps == 300 and not notes
