"""Errors: one line naming the cause, for the CLI and for API values alike.

Part of the hardening suite (``tests/hostile/``, one module per subject); the helpers are in
``support.py``, the ``images`` and ``tiny_run`` fixtures in ``tests/conftest.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support import TINY, cli, craft, interrupt_after_steps, one_clean_error

import inrkit
from inrkit.cli import main
from inrkit.errors import ConfigError, DataError, TrainingInterrupted


# -- 13. one line per error ------------------------------------------------------------------------
def test_a_yaml_error_is_one_line_naming_the_file_and_line(images: Path, tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  steps: 3\n  lr: [1, 2\nmodel: {width: 8}\n")
    result = cli("run", "--config", config, "--data", images, "--out", tmp_path / "o")
    one_clean_error(result, str(config), "line ")
    assert "<unicode string>" not in result.output


def test_validation_errors_from_metadata_are_one_line_without_urls(tiny_run: Path, tmp_path: Path):
    run = craft(tiny_run, tmp_path / "bad", metadata={"config": json.dumps({"model": {"width": "x\nmore"}, "nope": 1})})
    result = cli("decode", run, "--item", "0", "-o", tmp_path / "x.png")
    one_clean_error(result, "model.width")
    assert "errors.pydantic.dev" not in result.output


def test_a_refused_snapshot_is_one_line(tmp_path: Path, images: Path, monkeypatch):
    out = tmp_path / "run"
    interrupt_after_steps(monkeypatch, 1)
    with pytest.raises(TrainingInterrupted):
        inrkit.fit(TINY, data=[str(images)], out=out)
    monkeypatch.undo()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, out / "resume.pt")
    one_clean_error(cli("run", "--resume", out), "resume.pt", "not a readable inrkit snapshot")
    (out / "resume.pt").write_bytes(b"garbage")
    one_clean_error(cli("run", "--resume", out), "resume.pt")
    torch.save([1, 2], out / "resume.pt")
    one_clean_error(cli("run", "--resume", out), "not an inrkit snapshot")


def test_every_inrkit_error_is_printed_on_one_line():
    @main.command("probe-error")
    def probe() -> None:
        raise DataError("first line\nsecond line\n\nthird")

    try:
        result = cli("probe-error")
    finally:
        main.commands.pop("probe-error")
    one_clean_error(result, "first line; second line; third")


# -- 14. API values --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda run: run.decode(0.5),
        lambda run: run.decode(True),
        lambda run: run.decode(None),
        lambda run: run.decode(0, size=(2.7, 3.2)),
        lambda run: run.decode(0, size="10x10"),
        lambda run: run.decode(0, size=(10,)),
        lambda run: run.decode(0, size=(True, 4)),
        lambda run: run.decode(0, size=(float("nan"), 4)),
        lambda run: run.decode(0, scale="2"),
        lambda run: run.decode(0, scale=True),
        lambda run: run.decode(0, scale=-1),
        lambda run: run.decode(0, max_pixels=0),
    ],
)
def test_api_values_are_refused_with_inrkit_errors(tiny_run: Path, call):
    with pytest.raises(ConfigError):
        call(inrkit.load(tiny_run))


def test_whole_numbers_of_any_type_are_accepted(tiny_run: Path):
    run = inrkit.load(tiny_run)
    assert run.decode(np.int64(1), size=(np.int32(4), 6.0)).shape == (4, 6, 3)
    assert np.array_equal(run.decode("1"), run.decode(1)) and np.array_equal(run.decode(1.0), run.decode(1))
    with pytest.raises(DataError, match="not in run"):
        run.decode(7)


# -- round two: one rule for values, CLI and API alike ---------------------------------------------
def _whole_number_fields() -> list[tuple[str, str]]:
    """Every whole-number field of the run config and of every installed plugin's options."""
    from inrkit.config import ModelConfig, TrainConfig
    from inrkit.interfaces import _whole_number_fields
    from inrkit.plugins import get_registry

    found = [(f"model.{n}", "") for n in sorted(_whole_number_fields(ModelConfig))]
    found += [(f"train.{n}", "") for n in sorted(_whole_number_fields(TrainConfig))]
    registry = get_registry()
    for kind in ("activation", "sharing", "signal"):
        for name in registry.names(kind):
            options = registry.entry(kind, name).cls.Options
            found += [(f"{kind}.{n}", name) for n in sorted(_whole_number_fields(options))]
    return found


@pytest.mark.parametrize(("key", "plugin"), _whole_number_fields(), ids=lambda v: v or "-")
def test_no_whole_number_field_takes_a_boolean(key: str, plugin: str):
    """``--set train.items_per_step=true`` trained one item per step: pydantic's lax int took True."""
    from inrkit.config import ResolvedRun, apply_overrides

    kind = key.split(".")[0]
    data = apply_overrides({kind: {"name": plugin}} if plugin else {}, [f"{key}=true"])
    with pytest.raises(ConfigError, match=key.split(".")[-1]):
        ResolvedRun(inrkit.as_config(data))


def test_the_field_walk_finds_the_counts():
    keys = {key for key, _ in _whole_number_fields()}
    assert {"model.width", "train.steps", "train.items_per_step", "train.seed", "signal.max_side"} <= keys


def test_cli_refuses_a_boolean_count(images: Path, tmp_path: Path):
    result = cli("run", "--data", images, "--set", "train.items_per_step=true", "--out", tmp_path / "r")
    one_clean_error(result, "train.items_per_step", "whole number")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda: inrkit.fit("a string"), ConfigError, "read_config_file"),
        (lambda: inrkit.fit(5), ConfigError, "not int"),
        (lambda: inrkit.fit({}, data=5), DataError, "data must be"),
        (lambda: inrkit.fit({}, data=[Path("x"), 3]), DataError, "not int"),
        (lambda: inrkit.fit({}, data=b"images/"), DataError, "not bytes"),
    ],
)
def test_api_arguments_of_the_wrong_kind_are_inrkit_errors(call, error, fragment: str):
    with pytest.raises(error, match=fragment):
        call()


def test_compress_takes_whole_numbers_of_any_type(tiny_run: Path, tmp_path: Path):
    done = inrkit.compress(tiny_run, tmp_path / "a.inrz", bits=np.int64(6), fine_bits=10.0, qat_steps=np.int32(0),
                           measure=False)
    assert done.bits == 6 and done.fine_bits == 10
    for bad in (True, 6.5, "6", 99):
        with pytest.raises(ConfigError, match="bits"):
            inrkit.compress(tiny_run, tmp_path / "b.inrz", bits=bad, measure=False)
    with pytest.raises(ConfigError, match="qat_steps"):
        inrkit.compress(tiny_run, tmp_path / "b.inrz", qat_steps=10**20, measure=False)


def test_qat_steps_are_bounded_on_the_command_line(tiny_run: Path, tmp_path: Path):
    result = cli("compress", tiny_run, "-o", tmp_path / "a.inrz", "--qat-steps", str(10**20))
    assert result.exit_code == 2 and "--qat-steps" in result.output and not (tmp_path / "a.inrz").exists()


@pytest.mark.parametrize("fault", ["read-only", "not writable"])
def test_an_unwritable_out_is_named_as_such_not_as_a_space_problem(images: Path, tmp_path: Path, monkeypatch, fault: str):
    import os

    if fault == "read-only":
        real = os.statvfs
        monkeypatch.setattr(os, "statvfs", lambda p: type("V", (), {"f_flag": os.ST_RDONLY, "f_bavail": 0})()
                            if str(p).startswith(str(tmp_path)) else real(p))
    else:
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p).startswith(str(tmp_path)) else real_access(p, mode, **k))
    result = cli("run", "--data", images, "--width", "8", "--layers", "3", "--steps", "2", "--out", tmp_path / "r")
    one_clean_error(result, "read-only file system" if fault == "read-only" else "not writable")
    assert "free" not in result.output
