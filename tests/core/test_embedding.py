"""Embedding inrkit in other research code: create_model, a user's own loop, Trainer.fit, old runs."""

from __future__ import annotations

import runpy
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import inrkit
from inrkit.errors import ConfigError, PluginError
from inrkit.interfaces import inr_model_gaps
from inrkit.nn import count_parameters, validate_model
from inrkit.plugins import get_registry

ROOT = Path(__file__).resolve().parents[2]
SNIPPETS = ROOT / "docs" / "snippets"
OLD_RUN = Path(__file__).parents[1] / "data" / "run-0.1.0"


def test_the_docs_own_loop_snippet_runs_and_fits(capsys: pytest.CaptureFixture[str]):
    scope = runpy.run_path(str(SNIPPETS / "embed_loop.py"))
    assert not inr_model_gaps(scope["model"])
    assert float(scope["psnr"]) > 30.0  # 34.1 dB measured; the untrained network is near 10 dB
    assert "PSNR" in capsys.readouterr().out


def test_the_docs_trainer_snippet_runs_with_a_callback(capsys: pytest.CaptureFixture[str]):
    scope = runpy.run_path(str(SNIPPETS / "embed_trainer.py"))
    history = scope["result"].history
    assert [h["step"] for h in history] == [50, 100, 150, 200]
    assert history[-1]["psnr"] > history[0]["psnr"] + 5.0
    assert not scope["model"].items["projection"].weight.requires_grad  # the user's change held
    assert capsys.readouterr().out.count("step ") == 4


@pytest.mark.parametrize("sharing", get_registry().names("sharing"))
@pytest.mark.parametrize("activation", get_registry().names("activation"))
def test_create_model_works_for_every_activation_and_strategy(activation: str, sharing: str):
    model = inrkit.create_model(activation=activation, sharing=sharing, n_items=3, width=16, layers=4)
    assert not inr_model_gaps(model) and isinstance(model, torch.nn.Module)
    validate_model(model, sharing, model.spec)
    out = model(inrkit.coords.grid((5, 6)).expand(3, -1, -1))
    assert out.shape == (3, 30, 3) and out.dtype == torch.float32 and torch.isfinite(out).all()
    config = {"activation": {"name": activation}, "sharing": {"name": sharing}, "model": {"width": 16, "layers": 4}}
    assert count_parameters(model) == inrkit.parameter_counts(config, n_items=3, item_shape=(1, 1))


def test_create_model_builds_the_model_inrkit_run_builds(image_dir: Path):
    from inrkit.runs.fit import prepare
    from inrkit.plugins import get_registry

    config = inrkit.as_config({"data": [str(image_dir)], "activation": {"name": "finer", "omega": 20},
                               "model": {"width": 16}, "train": {"seed": 3}})
    prepared = prepare(config, get_registry())
    mine = inrkit.create_model("finer", "minr", n_items=4, width=16, activation_options={"omega": 20}, seed=3)
    for key, value in prepared.model.state_dict().items():
        assert torch.equal(mine.state_dict()[key], value), key


def test_create_model_takes_options_as_dicts_options_objects_or_instances():
    registry = get_registry()
    finer = registry.get("activation", "finer")
    a = inrkit.create_model("finer", "minr", n_items=2, width=8, activation_options=finer.Options(omega=12), seed=0)
    b = inrkit.create_model(registry.create("activation", "finer", {"omega": 12}), "minr", n_items=2, width=8, seed=0)
    assert a.activation.options.omega == b.activation.options.omega == 12
    c = inrkit.create_model(sharing="minr", n_items=2, width=8, sharing_options={"projection": False})
    assert "projection" not in c.items


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"activation": "nope", "n_items": 2}, PluginError, "unknown activation 'nope'; valid activation names: finer"),
        ({"activation_options": {"omgea": 3}, "n_items": 2}, ConfigError, "activation 'siren': activation.omgea: unknown key"),
        ({"n_items": 0}, ConfigError, "n_items must be a positive integer"),
        ({"n_items": 2, "width": 0}, ConfigError, "width"),
        ({"n_items": 3, "item_shapes": [(4, 4)] * 2}, ConfigError, "n_items=3 but 2 item shapes"),
        ({"item_shapes": [(4, 4, 4)]}, ConfigError, "must be 2 positive sizes"),
        ({"n_items": 2, "activation_options": [1]}, ConfigError, "options must be a dict"),
    ],
)
def test_create_model_refuses_bad_arguments_with_one_clear_message(kwargs, error, message):
    with pytest.raises(error, match=message):
        inrkit.create_model(**kwargs)


def test_a_strategy_returning_something_else_is_refused_naming_it():
    from inrkit.interfaces import SharingStrategy

    class Broken(SharingStrategy):
        name = "broken"

        def build(self, activation, spec):  # type: ignore[no-untyped-def]
            return torch.nn.Linear(2, 3)

    with pytest.raises(PluginError, match="sharing strategy 'broken' returned Linear, which lacks activation"):
        inrkit.create_model(sharing=Broken(), n_items=2)


def test_a_run_written_by_inrkit_0_1_0_still_loads():
    run = inrkit.load(OLD_RUN)
    assert run.item_names == ["in0", "in1"]
    metrics = run.metrics
    assert metrics is not None and metrics.format_version == 1 and metrics.steps == 3
    assert metrics["psnr_mean"] == metrics.psnr_mean  # the JSON keys read as before
    for i, name in enumerate(run.item_names):
        saved = iio.imread(OLD_RUN / "recon" / f"{name}.png").astype(np.float32) / 255.0
        np.testing.assert_allclose(run.decode(i), saved, atol=0.5 / 255 + 1e-6)
    whole = run.model()
    with torch.no_grad():
        out = inrkit.coords.to_unit(whole(inrkit.coords.grid((8, 10)).expand(2, -1, -1)))
    np.testing.assert_allclose(out[1].reshape(8, 10, 3).numpy(), run.decode(1), atol=1e-6)


def test_metrics_of_a_newer_format_are_refused():
    from inrkit.errors import CheckpointError
    from inrkit.results import METRICS_FORMAT_VERSION, RunMetrics

    data = {"format_version": 99}
    with pytest.raises(CheckpointError, match=f"format version 99; this inrkit reads up to {METRICS_FORMAT_VERSION}"):
        RunMetrics.from_dict(data)
