"""Callbacks, the fourth plugin kind: hooks in order, TensorBoard and JSONL logs, no effect on results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import inrkit
from inrkit.cli import main
from inrkit.errors import ConfigError, PluginError
from inrkit.interfaces import Callback, FitContext
from inrkit.results import Evaluation, StepLog, TrainResult

SMALL = {"model": {"width": 16, "layers": 3}, "train": {"steps": 6, "device": "cpu", "log_every": 2}}


class Recorder(Callback):
    """Writes down every hook call."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def on_fit_start(self, context: FitContext) -> None:
        self.calls.append(("start", context.total_steps, context.start_step, context.item_names))

    def on_step_end(self, context: FitContext, log: StepLog) -> None:
        self.calls.append(("step", log.step, log.logged, log.loss, log.lr, log.item_psnr))

    def on_snapshot(self, context: FitContext, step: int, path: Path | None) -> None:
        self.calls.append(("snapshot", step, path))

    def on_evaluate(self, context: FitContext, evaluation: Evaluation) -> None:
        self.calls.append(("evaluate", evaluation.step, evaluation.final, evaluation.summary("psnr")[0]))

    def on_fit_end(self, context: FitContext, result: TrainResult | None) -> None:
        self.calls.append(("end", None if result is None else result.steps))


def _config(**train: object) -> dict:
    return {**SMALL, "train": {**SMALL["train"], **train}}


def test_hooks_are_called_in_order_with_what_happened(image_dir: Path, tmp_path: Path):
    rec = Recorder()
    result = inrkit.fit(_config(checkpoint_every=4, eval_every=3), data=[str(image_dir)], out=tmp_path / "r", callbacks=[rec])
    kinds = [c[0] for c in rec.calls]
    assert kinds == ["start", "step", "step", "step", "evaluate", "step", "snapshot", "step", "step", "evaluate", "end"]
    assert rec.calls[0] == ("start", 6, 0, tuple(f"img{i}" for i in range(4)))
    steps = [c for c in rec.calls if c[0] == "step"]
    assert [c[1] for c in steps] == [1, 2, 3, 4, 5, 6]
    assert [c[2] for c in steps] == [False, True, False, True, False, True]  # log_every=2
    assert all(c[3] is not None for c in steps)  # on the CPU the loss is read every step
    lrs = [c[4] for c in steps]
    assert lrs[0] == pytest.approx(5e-4) and all(a > b for a, b in zip(lrs, lrs[1:]))  # the decay
    logged = [c for c in steps if c[2]]
    assert [list(c[5]) for c in logged] == [h.item_psnr for h in result.metrics.history]
    assert rec.calls[6] == ("snapshot", 4, tmp_path / "r" / "resume.pt")
    mid, final = rec.calls[4], rec.calls[-2]
    assert mid[1:3] == (3, False) and final[1:3] == (6, True)
    assert final[3] == pytest.approx(result.metrics.psnr_mean)
    assert rec.calls[-1] == ("end", 6)


def test_callbacks_and_evaluations_do_not_change_what_is_trained(image_dir: Path, tmp_path: Path):
    plain = inrkit.fit(_config(), data=[str(image_dir)], save=False)
    watched = inrkit.fit(
        _config(eval_every=2, checkpoint_every=3, callbacks=["jsonl", "tensorboard"]),
        data=[str(image_dir)], out=tmp_path / "w", callbacks=[Recorder()],
    )
    assert (tmp_path / "w" / "log.jsonl").is_file() and (tmp_path / "w" / "tensorboard").is_dir()
    assert watched.metrics.psnr_mean == plain.metrics.psnr_mean
    assert [h.loss for h in watched.metrics.history] == [h.loss for h in plain.metrics.history]
    for key, value in plain.model.state_dict().items():
        assert torch.equal(watched.model.state_dict()[key], value), key


def test_fit_end_is_called_when_training_fails(image_dir: Path):
    class Breaks(Callback):
        name = "breaks"

        def on_step_end(self, context: FitContext, log: StepLog) -> None:
            if log.step == 2:
                raise RuntimeError("tracker went away")

    rec = Recorder()
    with pytest.raises(RuntimeError, match="tracker went away"):
        inrkit.fit(_config(), data=[str(image_dir)], save=False, callbacks=[rec, Breaks()])
    assert rec.calls[-1] == ("end", None)


def test_run_with_tensorboard_and_jsonl_writes_readable_logs(image_dir: Path, tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        ["run", "--data", str(image_dir), "--width", "16", "--layers", "3", "--steps", "6", "--no-progress",
         "--set", "train.log_every=2", "--set", "train.eval_every=3", "--log", "tensorboard", "--log", "jsonl",
         "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert [c["name"] for c in config["train"]["callbacks"]] == ["tensorboard", "jsonl"]

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = events.Tags()
    assert {"train/loss", "train/psnr", "train/lr", "eval/psnr_mean", "eval/ssim_mean"} <= set(tags["scalars"])
    assert {f"train_item_psnr/img{i}" for i in range(4)} <= set(tags["scalars"])
    assert {f"reconstruction/img{i}" for i in range(4)} <= set(tags["images"])
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [h["step"] for h in metrics["history"]] == [2, 4, 6]
    assert [e.value for e in loss] == pytest.approx([h["loss"] for h in metrics["history"]], rel=1e-6)
    assert [e.step for e in events.Scalars("eval/psnr_mean")] == [3, 6]
    assert events.Scalars("eval/psnr_mean")[-1].value == pytest.approx(metrics["psnr_mean"], rel=1e-6)

    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [(r["event"], r["step"]) for r in lines] == [
        ("start", 0), ("step", 2), ("evaluate", 3), ("step", 4), ("step", 6), ("evaluate", 6), ("end", 6)
    ]
    steps = [r for r in lines if r["event"] == "step"]
    assert [r["loss"] for r in steps] == [h["loss"] for h in metrics["history"]]
    assert steps[-1]["item_psnr"] == dict(zip([f"img{i}" for i in range(4)], metrics["history"][-1]["item_psnr"]))
    assert lines[-2]["final"] is True and lines[-2]["psnr_mean"] == pytest.approx(metrics["psnr_mean"])


def test_a_missing_tensorboard_package_is_one_clear_error(image_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--data", str(image_dir), "--steps", "2", "--log", "tensorboard", "--out", str(out)])
    assert result.exit_code == 2
    assert "pip install 'inrkit[tensorboard]'" in result.output and "Traceback" not in result.output
    assert not out.exists()  # refused before anything was written


def test_callback_names_and_options_are_validated(image_dir: Path):
    with pytest.raises(PluginError, match="unknown callback 'nope'.*jsonl"):
        inrkit.fit({**SMALL, "train": {**SMALL["train"], "callbacks": ["nope"]}}, data=[str(image_dir)], save=False)
    with pytest.raises(ConfigError, match="callback 'tensorboard': callback.max_items"):
        inrkit.fit({**SMALL, "train": {**SMALL["train"], "callbacks": [{"name": "tensorboard", "max_items": -1}]}},
                   data=[str(image_dir)], save=False)
    with pytest.raises(ConfigError, match="train.callbacks.*'jsonl' more than once"):
        inrkit.as_config({"train": {"callbacks": ["jsonl", {"name": "jsonl"}]}})
    result = CliRunner().invoke(main, ["run", "--log", "nope"])
    assert result.exit_code == 2 and "unknown callback 'nope'" in result.output


def test_log_flag_adds_to_the_config_files_callbacks(tmp_path: Path):
    from inrkit.cli.options import build_config_dict

    config = tmp_path / "c.toml"
    config.write_text('[train]\ncallbacks = [{name = "tensorboard", log_dir = "tb"}]\n')
    data = build_config_dict(str(config), {"log": ("jsonl", "tensorboard")}, [])
    assert inrkit.as_config(data).train.callbacks[0].options == {"log_dir": "tb"}
    assert [c.name for c in inrkit.as_config(data).train.callbacks] == ["tensorboard", "jsonl"]


def test_jsonl_keeps_the_lines_up_to_the_snapshot_when_a_run_resumes(tmp_path: Path):
    from inrkit.plugins import get_registry

    log = get_registry().create("callback", "jsonl")
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps({"event": "step", "step": s}) + "\n" for s in range(2, 12, 2)) + '{"event": "st')
    context = FitContext(total_steps=20, start_step=6, item_names=("a",), lr=1e-3, device="cpu", run_dir=tmp_path)
    log.on_fit_start(context)
    log.on_step_end(context, StepLog(step=8, total_steps=20, lr=1e-3, loss=0.5, psnr=9.0, item_psnr=(9.0,)))
    log.on_fit_end(context, None)
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines()]
    assert steps == [2, 4, 6, 8]


def test_progress_bar_is_a_callback(image_dir: Path, capsys: pytest.CaptureFixture[str]):
    inrkit.fit(_config(), data=[str(image_dir)], save=False, progress=True)
    assert "fitting" in capsys.readouterr().err


def test_trainer_fit_takes_callbacks_for_a_users_own_model():
    rng = np.random.default_rng(0)
    images = [rng.random((8, 8, 3), dtype=np.float32) for _ in range(2)]
    model = inrkit.create_model("siren", "minr", n_items=2, width=16, layers=3, seed=0)
    rec = Recorder()
    result = inrkit.Trainer(steps=4, device="cpu").fit(model, images, callbacks=[rec])
    assert [c[0] for c in rec.calls] == ["start", "step", "step", "step", "step", "end"]
    assert rec.calls[0][3] == ("0", "1") and result.steps == 4 and result.evaluation is None
    with pytest.raises(ConfigError, match="Callback instances"):
        inrkit.Trainer(steps=1, device="cpu").fit(model, images, callbacks=[object()])  # type: ignore[list-item]


THIRD_PARTY_CALLBACK = """
import inrkit
from inrkit.interfaces import Callback, PluginOptions


class CountSteps(Callback):
    name = "count-steps"
    seen = []

    class Options(PluginOptions):
        every: int = 1

    def on_step_end(self, context, log):
        if log.step % self.options.every == 0:
            CountSteps.seen.append(log.step)


@inrkit.hookimpl
def inrkit_register_callbacks():
    return [CountSteps]
"""


def test_a_third_party_callback_registers_by_entry_point_and_runs_by_name(fresh_registry, plugin_module, image_dir: Path):
    import importlib

    from conftest import entry_point

    module = plugin_module("count_steps_plugin", THIRD_PARTY_CALLBACK)
    registry = fresh_registry(entry_point("count-steps", module))
    assert "count-steps" in registry.names("callback")
    config = _config(callbacks=[{"name": "count-steps", "every": 2}])
    inrkit.fit(config, data=[str(image_dir)], save=False, registry=registry)
    assert importlib.import_module(module).CountSteps.seen == [2, 4, 6]
