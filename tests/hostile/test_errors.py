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
