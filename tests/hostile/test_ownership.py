"""Ownership: inrkit replaces or empties only what it can prove it wrote, and refuses before writing.

Every command that takes ``--out`` or ``-o`` is pointed at a folder and at a file that a user
made; afterwards every byte of them is where it was. A new command with such an option fails
``test_every_writing_command_is_walked`` until it is added here. The second half holds each
runner to "validate, then write": a refused rerun leaves its folder byte-identical.

Part of the hardening suite (``tests/hostile/``, one module per subject); the helpers are in
``support.py``, the ``images`` and ``tiny_run`` fixtures in ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import pytest
from support import cli, one_clean_error

from inrkit.cli import main

SMALL = ["--width", "8", "--layers", "3", "--steps", "2", "--no-progress"]


def refused(result, *fragments: str) -> None:
    """A non-zero exit with one ``Error:`` line naming ``fragments`` and no traceback (click's
    usage errors and a command's plan lines on stderr may precede it)."""
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and all(f in errors[0] for f in fragments), result.output


def snapshot(path: Path) -> dict[str, bytes | None]:
    """Every file under ``path`` (or ``path`` itself) with its bytes; folders as ``None``."""
    if path.is_file():
        return {".": path.read_bytes()}
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


def foreign_folder(path: Path) -> Path:
    """A user's folder, holding names inrkit itself writes: a ``failed.json`` of their own, an
    ``rd.md``, an image named like an item, a config."""
    path.mkdir()
    (path / "failed.json").write_text('{"job": 17, "status": "failed"}\n')
    (path / "notes.txt").write_text("my notes\n")
    (path / "rd.md").write_text("# my table\n")
    (path / "img0.png").write_bytes(b"not really a png")
    (path / "config.json").write_text('{"mine": true}\n')
    (path / "sub").mkdir()
    (path / "sub" / "keep.bin").write_bytes(bytes(range(256)))
    return path


#: command -> (arguments with OUT for the target, the suffix a file target needs).
def commands(images: Path, run: Path) -> dict[str, tuple[list[str], str]]:
    return {
        "run": (["run", "--data", images, *SMALL, "--no-plots", "--out", "OUT"], ""),
        "encode": (["encode", run, "--data", images, "--steps", "2", "--no-progress", "--out", "OUT"], ""),
        "decode": (["decode", run, "--item", "0", "-o", "OUT"], ".png"),
        "compare": (["compare", "--data", images, "--sharing", "separate,minr", *SMALL, "--out", "OUT"], ""),
        "sweep": (["sweep", "--data", images, "--grid", "train.lr=1e-3,2e-3", *SMALL, "--out", "OUT"], ""),
        "front": (["front", "--data", images, "--sharing", "minr", "--params", "2k", "--layers", "3", "--steps", "2",
                   "--no-progress", "--no-plots", "--out", "OUT"], ""),
        "compress": (["compress", run, "-o", "OUT"], ".inrz"),
        "rd": (["rd", "--data", images, "--codecs", "jpeg", "--out", "OUT"], ""),
        "analyze weights": (["analyze", "weights", run, "-o", "OUT"], ".png"),
        "analyze activations": (["analyze", "activations", run, "--no-gradients", "-o", "OUT"], ".json"),
    }


def _writing_commands(command: click.Command, path: tuple[str, ...] = ()) -> set[str]:
    if isinstance(command, click.Group):
        return {found for name, sub in command.commands.items() for found in _writing_commands(sub, (*path, name))}
    takes = any(isinstance(p, click.Option) and {"--out", "-o"} & set(p.opts) for p in command.params)
    return {" ".join(path)} if takes else set()


def test_every_writing_command_is_walked(images: Path, tiny_run: Path):
    assert _writing_commands(main) == set(commands(images, tiny_run))


def _invoke(args: list[object], target: Path):
    return cli(*[target if a == "OUT" else a for a in args])


@pytest.mark.parametrize("name", sorted(commands(Path("i"), Path("r"))))
def test_a_foreign_folder_is_left_byte_identical(images: Path, tiny_run: Path, tmp_path: Path, name: str):
    args, _ = commands(images, tiny_run)[name]
    target = foreign_folder(tmp_path / "mine")
    before = snapshot(target)
    _invoke(args, target)
    assert snapshot(target) == before, f"inrkit {name} changed a folder it did not write"


@pytest.mark.parametrize("name", sorted(commands(Path("i"), Path("r"))))
def test_a_foreign_file_is_left_byte_identical(images: Path, tiny_run: Path, tmp_path: Path, name: str):
    args, suffix = commands(images, tiny_run)[name]
    target = tmp_path / f"mine{suffix}"
    target.write_bytes(b"a user's own file\n" * 10)
    result = _invoke(args, target)
    assert target.read_bytes() == b"a user's own file\n" * 10, f"inrkit {name} overwrote {target.name}"
    refused(result)


def test_decode_all_never_replaces_a_users_file(tiny_run: Path, tmp_path: Path):
    target = foreign_folder(tmp_path / "mine")  # holds img0.png, named like the run's first item
    before = snapshot(target)
    refused(cli("decode", tiny_run, "--all", "-o", target), "img0.png", "--force")
    assert snapshot(target) == before


def test_a_users_failed_json_is_not_a_failed_run(images: Path, tmp_path: Path):
    target = foreign_folder(tmp_path / "mine")
    before = snapshot(target)
    result = cli("run", "--data", images, *SMALL, "--out", target)
    one_clean_error(result, "already holds files", "nothing was changed")
    assert snapshot(target) == before


def test_a_failed_run_is_replaced_but_never_what_was_added_to_it(images: Path, tmp_path: Path):
    out = tmp_path / "run"
    failed = cli("run", "--data", images, "--width", "8", "--layers", "3", "--steps", "3", "--lr", "1e30",
                 "--no-progress", "--out", out)
    assert failed.exit_code != 0 and (out / "failed.json").is_file(), failed.output
    record = json.loads((out / "failed.json").read_text())
    assert record["format"] == "inrkit.failed-run" and "config.json" in record["entries"]
    (out / "thesis.tex").write_text("two years of work\n")
    before = snapshot(out)
    one_clean_error(cli("run", "--data", images, *SMALL, "--out", out), "thesis.tex", "did not write")
    assert snapshot(out) == before
    (out / "thesis.tex").unlink()
    replaced = cli("run", "--data", images, *SMALL, "--no-plots", "--out", out)
    assert replaced.exit_code == 0, replaced.output
    assert (out / "metrics.json").is_file() and not (out / "failed.json").exists()


def test_a_dangling_link_as_out_names_the_link(images: Path, tmp_path: Path):
    link = tmp_path / "gone"
    link.symlink_to(tmp_path / "nowhere")
    one_clean_error(cli("run", "--data", images, *SMALL, "--out", link), "link to nothing")


def test_analyze_activations_replaces_a_file_only_with_force(tiny_run: Path, tmp_path: Path):
    target = tmp_path / "numbers.json"
    target.write_text("{}\n")
    one_clean_error(cli("analyze", "activations", tiny_run, "--no-gradients", "-o", target), "--force")
    assert target.read_text() == "{}\n"
    done = cli("analyze", "activations", tiny_run, "--no-gradients", "-o", target, "--force")
    assert done.exit_code == 0, done.output
    assert "trained" in json.loads(target.read_text())


# -- validate, then write --------------------------------------------------------------------------
def _finished_rd(images: Path, out: Path) -> None:
    result = cli("rd", "--data", images, "--sharing", "minr", "--width", "8", "--layers", "3", "--steps", "2",
                 "--bits", "8", "--codecs", "jpeg", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output


def test_a_refused_rd_rerun_leaves_its_folder_byte_identical(images: Path, tmp_path: Path):
    out = tmp_path / "rd"
    _finished_rd(images, out)
    summary = json.loads((out / "rd.json").read_text())
    assert summary["format"] == "inrkit.rd" and any(p["method"] == "minr" for p in summary["points"])
    before = snapshot(out)
    for refused in (
        ["--steps", "3"],  # another recipe for the same fits
        ["--steps", "2", "--width", "99999"],  # beyond the width limit
        ["--steps", "2", "--set", "train.items_per_step=true"],  # a boolean as a count
    ):
        result = cli("rd", "--data", images, "--sharing", "minr", "--width", "8", "--layers", "3", "--bits", "8",
                     "--codecs", "jpeg", "--no-progress", "--out", out, *refused)
        one_clean_error(result)
        assert snapshot(out) == before, f"a refused rd ({refused}) changed its folder"


def test_rd_reads_its_points_back_checked(images: Path, tmp_path: Path):
    out = tmp_path / "rd"
    _finished_rd(images, out)
    point = next((out / "points").glob("jpeg-*.json"))
    data = json.loads(point.read_text())
    del data["bpp"]
    point.write_text(json.dumps(data))
    before = snapshot(out)
    result = cli("rd", "--data", images, "--sharing", "minr", "--width", "8", "--layers", "3", "--steps", "2",
                 "--bits", "8", "--codecs", "jpeg", "--no-progress", "--out", out)
    one_clean_error(result, point.name, "'bpp'")
    assert snapshot(out) == before


@pytest.mark.parametrize("kind", ["compare", "sweep", "front"])
def test_a_refused_runner_rerun_leaves_its_folder_byte_identical(images: Path, tmp_path: Path, kind: str):
    out = tmp_path / kind
    extra = {
        "compare": ["--sharing", "separate,minr", "--width", "8"],
        "sweep": ["--grid", "train.lr=1e-3,2e-3", "--width", "8"],
        "front": ["--sharing", "minr", "--params", "2k", "--no-plots"],
    }[kind]
    first = cli(kind, "--data", images, *extra, "--layers", "3", "--steps", "2", "--no-progress", "--out", out)
    assert first.exit_code == 0, first.output
    # a foreign file where a later point's run folder goes: refused before anything is rewritten
    victim = sorted(p.parent for p in out.rglob("metrics.json"))[-1]
    shutil.rmtree(victim)
    victim.mkdir()
    (victim / "mine.txt").write_text("not a run\n")
    before = snapshot(out)
    result = cli(kind, "--data", images, *extra, "--layers", "3", "--steps", "2", "--no-progress", "--out", out)
    refused(result, victim.name, "nothing was changed")
    assert snapshot(out) == before, f"a refused {kind} rerun changed its folder"
