"""The wandb and mlflow callbacks, run with the real packages, offline.

The W&B runs are offline runs read back from their ``.wandb`` file (W&B's own record protobufs);
the MLflow runs are SQLite stores under the run folder, queried with MLflow's own client.
Nothing here touches the network: no API key, no netrc, ``HOME`` in a temporary folder.
"""

from __future__ import annotations

import builtins
import json
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import inrkit
from inrkit.cli import main
from inrkit.config import apply_overrides
from inrkit.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore:.*noload.*:DeprecationWarning")  # inside MLflow's SQL store

wandb = pytest.importorskip("wandb")
mlflow = pytest.importorskip("mlflow")

from inrkit_callbacks import wandb as wandb_plugin  # noqa: E402
from inrkit_callbacks.mlflow import MlflowTracker, flatten  # noqa: E402

TINY = ["--width", "8", "--layers", "3", "--steps", "4", "--set", "train.lr=1e-3", "--set", "train.log_every=2",
        "--set", "train.device=cpu", "--no-progress"]
CONFIG = {"model": {"width": 8, "layers": 3}, "train": {"steps": 4, "lr": 1e-3, "log_every": 2, "device": "cpu"}}


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No W&B login anywhere (no key, no netrc, a fresh HOME), its files and caches in tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_RUN_GROUP",
                 "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    for name, sub in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data"),
                      ("WANDB_ARTIFACT_DIR", "artifacts")):
        monkeypatch.setenv(name, str(home / "wandb" / sub))
    monkeypatch.delenv("WANDB_SILENT", raising=False)  # the callback itself keeps W&B quiet
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module", autouse=True)
def _wandb_service() -> Iterator[None]:
    """W&B's service process ends with the module."""
    yield
    wandb.teardown()


def cli(*args: object) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error(result: Any, fragment: str) -> None:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0], result.output


# -- reading a W&B offline run back -----------------------------------------------------------

def _wandb_records(path: Path) -> Iterator[bytes]:
    """The records of a ``.wandb`` file: a 7-byte header (``:W&B``, magic, version), then LevelDB
    log records (checksum, length, type; full, first, middle, last) in 32 KiB blocks."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + length > len(data):  # a record still being written
            return
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
        else:
            return


def read_wandb_run(folder: Path, wait: float = 60.0) -> dict[str, Any]:
    """One offline run under ``folder/wandb/``: its history rows, final summary, config and group.

    W&B's service hands each record to its file writer and to its sender at once, and
    ``run.finish()`` returns when the sender saw the exit record; the file can still be behind
    on a busy machine. So the file is read until it holds the exit record, for up to ``wait``
    seconds (then what it holds is returned, and the assertions say what is missing)."""
    runs = sorted((folder / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, runs
    deadline = time.monotonic() + wait
    while True:
        out = _parse_wandb_file(runs[0])
        if out["exit"] is not None or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def _parse_wandb_file(path: Path) -> dict[str, Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    out: dict[str, Any] = {"history": [], "summary": {}, "config": {}, "group": None, "exit": None}
    for data in _wandb_records(path):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            out["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "run":
            out["group"] = record.run.run_group
            out["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "exit":
            out["exit"] = record.exit.exit_code
    return out


def _wandb_diagnosis(run: dict[str, Any], output: str, folder: Path) -> str:
    """What to look at when an offline run lacks a step: the steps and keys it holds, what the
    CLI printed and the warnings and errors of W&B's own logs."""
    rows = [(row.get("_step"), sorted(row)) for row in run["history"]]
    logs = [line for log in sorted((folder / "wandb").glob("offline-run-*/logs/*.log"))
            for line in log.read_text(errors="replace").splitlines() if "WARN" in line or "ERROR" in line]
    return f"history {rows}, exit {run['exit']}; CLI output: {output!r}; W&B log: {logs}"


def _metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())


# -- wandb ------------------------------------------------------------------------------------

def test_wandb_offline_run_has_the_steps_the_config_and_the_summary(images: Path, tmp_path: Path):
    run_dir = tmp_path / "r"
    result = cli("run", "--data", images, "--out", run_dir, "--log", "wandb", "--set", "callbacks.wandb.max_items=1", *TINY)
    assert result.exit_code == 0, result.output
    assert "wandb:" not in result.output and "sync" not in result.output  # quiet: no banner, no sync hints
    run = read_wandb_run(run_dir)
    steps = {row["_step"]: row for row in run["history"]}
    assert {2, 4} <= steps.keys(), _wandb_diagnosis(run, result.output, run_dir)  # log_every=2
    for step in (2, 4):
        assert {"train/loss", "train/psnr", "train/lr", "train_item_psnr/img0"} <= steps[step].keys()
        assert "train_item_psnr/img1" not in steps[step]  # max_items=1
    metrics = _metrics(run_dir)
    logged = {h["step"]: h for h in metrics["history"]}
    assert steps[4]["train/loss"] == pytest.approx(logged[4]["loss"])
    assert steps[4]["eval/psnr_mean"] == pytest.approx(metrics["psnr_mean"], abs=1e-4)
    assert steps[4]["reconstruction/img0/_type"] == "image-file"
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert (offline / "files" / steps[4]["reconstruction/img1/path"]).is_file()
    assert run["summary"]["psnr_mean"] == pytest.approx(metrics["psnr_mean"])
    assert run["summary"]["params/total"] == metrics["params"]["total"]
    assert run["summary"]["sharing"] == "minr"
    assert run["config"]["model"]["width"] == 8
    assert run["group"] == ""  # a single run has no group
    assert run["exit"] == 0


def test_wandb_mode_follows_the_option_then_the_environment_then_a_login(tmp_path: Path):
    assert wandb_plugin.default_mode(None, {}) == "offline"
    assert wandb_plugin.default_mode("disabled", {"WANDB_API_KEY": "x" * 40}) == "disabled"
    assert wandb_plugin.default_mode(None, {"WANDB_MODE": "offline", "WANDB_API_KEY": "x" * 40}) == "offline"
    assert wandb_plugin.default_mode(None, {"WANDB_API_KEY": "x" * 40}) == "online"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert wandb_plugin.default_mode(None, {"NETRC": str(netrc)}) == "online"
    assert wandb_plugin.default_mode(None, {"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.org"}) == "offline"
    assert wandb_plugin.default_mode(None, {"NETRC": str(tmp_path / "missing")}) == "offline"


# -- mlflow -----------------------------------------------------------------------------------

def _one_run(uri: str) -> Any:
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("inrkit")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`inrkit.role` = 'fit'")
    assert len(runs) == 1
    return client, runs[0]


def test_mlflow_default_store_in_the_run_folder_has_metrics_params_and_artifacts(images: Path, tmp_path: Path):
    run_dir = tmp_path / "r"
    result = cli("run", "--data", images, "--out", run_dir, "--log", "mlflow", "--plots", *TINY)
    assert result.exit_code == 0, result.output
    assert "INFO" not in result.output and "alembic" not in result.output.lower()
    db = run_dir / "mlflow" / "mlflow.db"
    assert db.is_file()
    client, run = _one_run(f"sqlite:///{db}")
    assert run.info.status == "FINISHED" and run.info.run_name == "r"
    loss = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in loss] == [2, 4]
    assert {m.step for m in client.get_metric_history(run.info.run_id, "train_item_psnr/img1")} == {2, 4}
    metrics = _metrics(run_dir)
    assert run.data.metrics["psnr_mean"] == pytest.approx(metrics["psnr_mean"])
    assert run.data.metrics["eval/psnr_mean"] == pytest.approx(metrics["psnr_mean"], abs=1e-4)
    assert run.data.params["model.width"] == "8" and run.data.params["train.steps"] == "4"
    assert json.loads(run.data.params["train.callbacks"])[0]["name"] == "mlflow"
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "reconstructions", "plots"} <= names
    recons = {a.path for a in client.list_artifacts(run.info.run_id, "reconstructions")}
    assert recons == {"reconstructions/img0.png", "reconstructions/img1.png"}
    assert any(a.path.endswith(".png") for a in client.list_artifacts(run.info.run_id, "plots"))
    # the artifacts are files in the run folder, not ./mlruns of the working directory
    assert (run_dir / "mlflow" / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()
    stored = Path(client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path)))
    assert json.loads(stored.read_text())["psnr_mean"] == pytest.approx(metrics["psnr_mean"])


def test_mlflow_tracking_uri_is_set_with_set_callbacks(images: Path, tmp_path: Path):
    result = cli("run", "--data", images, "--out", tmp_path / "r", "--log", "mlflow",
                 "--set", "callbacks.mlflow.tracking_uri=sqlite:///shared.db", *TINY)  # relative: the working directory
    assert result.exit_code == 0, result.output
    assert (tmp_path / "shared.db").is_file() and not (tmp_path / "r" / "mlflow").exists()
    _, run = _one_run("sqlite:///shared.db")
    assert "psnr_mean" in run.data.metrics
    assert (tmp_path / "mlartifacts").is_dir()


def test_bare_trainer_fit_ends_the_mlflow_run_at_fit_end(tmp_path: Path):
    import numpy as np

    from inrkit.factory import create_model

    model = create_model(activation="siren", sharing="separate", width=8, layers=3, item_shapes=[(4, 4)], out_dim=3)
    tracker = MlflowTracker({"tracking_uri": f"sqlite:///{tmp_path / 'bare.db'}"})
    inrkit.Trainer(steps=2, device="cpu", log_every=1).fit(model, [np.full((4, 4, 3), 0.5, np.float32)], callbacks=[tracker])
    client, run = _one_run(f"sqlite:///{tmp_path / 'bare.db'}")
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]


def test_mlflow_failure_while_training_warns_and_the_run_goes_on(images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls = {"n": 0}
    real = mlflow.MlflowClient.log_batch

    def flaky(self: Any, run_id: str, metrics: Any = (), params: Any = (), tags: Any = (), **kw: Any) -> Any:
        if metrics:
            calls["n"] += 1
            raise OSError("the tracking server went away")
        return real(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", flaky)
    with pytest.warns(RuntimeWarning, match="mlflow: logging a step failed .*the tracking server went away"):
        result = inrkit.fit({**CONFIG, "train": {**CONFIG["train"], "callbacks": ["mlflow"]}}, data=[str(images)], out=tmp_path / "r")
    assert calls["n"] == 1  # given up after the first failure
    assert result.metrics is not None and (tmp_path / "r" / "metrics.json").is_file()
    _, run = _one_run(f"sqlite:///{tmp_path / 'r' / 'mlflow' / 'mlflow.db'}")
    assert run.info.status == "FAILED"


def test_flatten_joins_nested_keys_with_dots():
    assert dict(flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": None, "g": {}})) == {
        "a.b": "1", "a.c.d": "x", "e": "[1, 2]", "f": "null", "g": "{}",
    }


# -- experiments: one group --------------------------------------------------------------------

def test_compare_groups_its_fits_in_one_wandb_group_and_one_mlflow_parent(images: Path, tmp_path: Path):
    out = tmp_path / "cmp"
    result = cli("compare", "--sharing", "separate,minr", "--data", images, "--out", out, "--log", "wandb", "--log", "mlflow", *TINY)
    assert result.exit_code == 0, result.output
    fits = sorted(p.parent for p in out.glob("*/metrics.json"))
    assert len(fits) == 2
    groups = {read_wandb_run(fit)["group"] for fit in fits}
    assert groups == {f"compare:{out.name}"}
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("inrkit")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("inrkit.role") == "group"]
    children = [r for r in runs if r.data.tags.get("inrkit.role") == "fit"]
    assert len(parents) == 1 and len(children) == 2
    assert parents[0].data.tags["inrkit.group"] == f"compare:{out.name}"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert {c.info.run_name for c in children} == {f.name for f in fits}
    for child, fit in zip(sorted(children, key=lambda r: r.info.run_name), fits, strict=True):
        assert child.data.metrics["psnr_mean"] == pytest.approx(_metrics(fit)["psnr_mean"])


# -- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "extra"), [("wandb", "inrkit[wandb]"), ("mlflow", "inrkit[mlflow]")])
def test_a_missing_package_is_one_error_naming_the_extra(name: str, extra: str, images: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    real_import = builtins.__import__

    def no_package(module: str, *args: Any, **kwargs: Any) -> Any:
        if module == name or module.startswith(name + "."):
            raise ImportError(f"No module named {module!r}")
        return real_import(module, *args, **kwargs)

    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(builtins, "__import__", no_package)
    result = cli("run", "--data", images, "--out", tmp_path / "r", "--log", name, *TINY)
    one_error(result, f"pip install '{extra}'")
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_mlflow_without_sqlalchemy_names_the_extra(images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real_import = builtins.__import__

    def no_sql(module: str, *args: Any, **kwargs: Any) -> Any:
        if module.split(".")[0] in ("sqlalchemy", "alembic"):
            raise ImportError(f"No module named {module!r}", name=module.split(".")[0])
        return real_import(module, *args, **kwargs)

    for module in [m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "alembic") or "sqlalchemy_store" in m
                   or m.startswith("mlflow.store.db")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(builtins, "__import__", no_sql)
    result = cli("run", "--data", images, "--out", tmp_path / "r", "--log", "mlflow", *TINY)
    one_error(result, "pip install 'inrkit[mlflow]'")


@pytest.mark.parametrize(("assignment", "fragment"), [
    ("callbacks.mlflow.tracking_uri=mlflow.db", "must be a URI"),
    ("callbacks.mlflow.trackinguri=sqlite:///x.db", "trackinguri"),
    ("callbacks.wandb.mode=sometimes", "mode"),
    ("callbacks.wandb.max_items=-1", "max_items"),
])
def test_a_bad_option_is_refused_before_training(assignment: str, fragment: str, images: Path, tmp_path: Path):
    result = cli("run", "--data", images, "--out", tmp_path / "r", "--set", assignment, *TINY)
    one_error(result, fragment)
    assert not (tmp_path / "r").exists()


def test_an_unwritable_store_is_one_error(images: Path, tmp_path: Path):
    (tmp_path / "a-file").write_text("")
    result = cli("run", "--data", images, "--out", tmp_path / "r", "--log", "mlflow",
                 "--set", f"callbacks.mlflow.tracking_uri=sqlite:///{tmp_path / 'a-file' / 'm.db'}", *TINY)
    one_error(result, "callback 'mlflow': cannot write into")
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_set_callbacks_option_adds_or_updates_the_entry():
    data = apply_overrides({"train": {"callbacks": ["jsonl", {"name": "mlflow", "experiment": "e"}]}},
                           ["callbacks.mlflow.tracking_uri=sqlite:///m.db", "callbacks.wandb.max_items=2"])
    assert data["train"]["callbacks"] == [
        {"name": "jsonl"}, {"name": "mlflow", "experiment": "e", "tracking_uri": "sqlite:///m.db"}, {"name": "wandb", "max_items": 2},
    ]
    with pytest.raises(ConfigError, match="callbacks.NAME.OPTION"):
        apply_overrides({}, ["callbacks.mlflow=1"])
