"""What the hardening tests share: a refusal checker, a crafted-folder maker, an interrupter.

Imported by the ``test_*.py`` beside it (pytest's default import mode puts their folder on
``sys.path``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from click.testing import CliRunner
from conftest import TINY_RUN
from safetensors.torch import load_file, save_file

import inrkit
from inrkit.cli import main

#: The run config of the ``tiny_run`` fixture, for tests that fit their own.
TINY = TINY_RUN


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_clean_error(result, *fragments: str, code: int | None = None) -> None:
    """A refusal: non-zero exit (or ``code``), exactly one ``Error:`` line, no traceback."""
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and len(result.output.strip().splitlines()) == 1 + sum(
        1 for line in result.output.splitlines() if line.startswith(("Warning:", "Note:"))
    ), result.output
    for fragment in fragments:
        assert fragment in lines[0], result.output


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def craft(run: Path, dest: Path, *, items=None, config=None, metadata=None, tensors=None, drop_sums: bool = False) -> Path:
    """A copy of ``run`` with rewritten checkpoint metadata or tensors, its SHA256SUMS updated (a
    careful attacker's folder: the checksum only guards against corruption)."""
    shutil.copytree(run, dest)
    path = dest / "checkpoint.safetensors"
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        meta = dict(handle.metadata())
    state = load_file(str(path))
    if items is not None:
        meta["items"] = json.dumps(items)
    if config is not None:
        meta["config"] = json.dumps(config)
    meta.update(metadata or {})
    if tensors is not None:
        state = tensors(state)
    save_file(state, str(path), metadata=meta)
    sums = dest / "SHA256SUMS"
    if drop_sums:
        sums.unlink(missing_ok=True)
    elif sums.exists():
        sums.write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  checkpoint.safetensors\n")
    return dest


def items_meta(run: Path) -> list[dict]:
    return inrkit.load(run).items


def interrupt_after_steps(monkeypatch, steps: int, exc: type[BaseException] = KeyboardInterrupt, *args) -> None:
    """Make every fit started through the API raise ``exc`` after ``steps`` steps (a callback)."""
    from inrkit.interfaces import Callback

    class Interrupt(Callback):
        name = "interrupt"

        def on_step_end(self, context, log):
            if log.step >= steps:
                raise exc(*args)

    from inrkit import api

    real = api._callbacks
    monkeypatch.setattr(api, "_callbacks", lambda registry, progress, callbacks: [*real(registry, progress, callbacks), Interrupt()])

