"""Tampered, mismatched, failed or corrupted run folders: refused with the cause, never replaced.

Part of the hardening suite (``tests/hostile/``, one module per subject); the helpers are in
``support.py``, the ``images`` and ``tiny_run`` fixtures in ``tests/conftest.py``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from support import TINY, cli, craft, interrupt_after_steps, items_meta, one_clean_error

import inrkit
from inrkit.errors import CheckpointError, TrainingInterrupted


# -- 9. tampered or mismatched run folders ---------------------------------------------------------
def test_encode_with_wrong_tensor_shapes(tiny_run: Path, images: Path, tmp_path: Path):
    def widen(state):
        key = next(k for k in state if k.startswith("shared.") and k.endswith("weight"))
        state[key] = torch.zeros(3, 5)
        return state

    run = craft(tiny_run, tmp_path / "bad", tensors=widen)
    result = cli("encode", run, "--data", images, "--out", tmp_path / "enc", "--steps", "1", "--no-progress")
    one_clean_error(result, "does not match the model its config builds", "has shape (3, 5)")
    one_clean_error(cli("decode", run, "--item", "0", "-o", tmp_path / "x.png"), "has shape (3, 5)")


def test_resume_after_config_json_was_edited(images: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "run"
    interrupt_after_steps(monkeypatch, 1)
    with pytest.raises(TrainingInterrupted):
        inrkit.fit({**TINY, "train": {"steps": 5}}, data=[str(images)], out=out)
    monkeypatch.undo()
    original = (out / "config.json").read_text()
    config = json.loads(original)
    config["model"]["width"] = 16
    (out / "config.json").write_text(json.dumps(config))
    one_clean_error(cli("run", "--resume", out), "snapshot resume.pt", "config.json edited")
    config["model"]["width"] = "sixteen"
    (out / "config.json").write_text(json.dumps(config))
    one_clean_error(cli("run", "--resume", out), "config.json", "model.width")
    assert not (out / "failed.json").exists()  # the snapshot is kept, not marked for replacing
    (out / "config.json").write_text(original)
    assert inrkit.fit(resume=out).metrics.steps == 5


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m[0].update(shape=["a", 8]),
        lambda m: m[0].update(shape=[8.5, 8]),
        lambda m: m[0].update(shape=[True, 8]),
        lambda m: m[0].update(shape=[0, 8]),
        lambda m: m[0].update(shape=[-8, 8]),
        lambda m: m[0].update(channels="3"),
        lambda m: m[0].pop("name"),
        lambda m: m[0].update(name=["a"]),
        lambda m: m.clear(),
        lambda m: m[0].update(eval_shape=[8, 8, 8]),
    ],
    ids=["str-size", "float-size", "bool-size", "zero", "negative", "str-channels", "no-name", "list-name", "no-items", "eval-dims"],
)
def test_decode_with_bad_metadata(tiny_run: Path, tmp_path: Path, change):
    meta = items_meta(tiny_run)
    change(meta)
    run = craft(tiny_run, tmp_path / "bad", items=meta)
    one_clean_error(cli("decode", run, "--item", "0", "-o", tmp_path / "x.png"), "checkpoint.safetensors")


@pytest.mark.parametrize("metadata", [{"items": "not json["}, {"config": '{"model": {"width": "x"}}'}, {"format_version": "9"}])
def test_other_bad_metadata(tiny_run: Path, tmp_path: Path, metadata):
    run = craft(tiny_run, tmp_path / "bad", metadata=metadata)
    one_clean_error(cli("decode", run, "--item", "0", "-o", tmp_path / "x.png"))


@pytest.mark.parametrize("key", ["items.x.first.weight", "items", "items.0", "items.7.first.weight", "items.-1.first.weight"])
def test_malformed_tensor_keys(tiny_run: Path, tmp_path: Path, key: str):
    def add(state):
        state[key] = torch.zeros(2)
        return state

    run = craft(tiny_run, tmp_path / "bad", tensors=add)
    for args in (["analyze", "weights", run, "-o", tmp_path / "w.png"], ["decode", run, "--item", "0", "-o", tmp_path / "x.png"]):
        one_clean_error(cli(*args), "checkpoint.safetensors")
    assert not (tmp_path / "w.png").exists()


# -- 11. a diverged run ----------------------------------------------------------------------------
def test_a_diverged_run_is_marked_failed_and_a_rerun_replaces_it(images: Path, tmp_path: Path):
    out = tmp_path / "diverge"
    result = cli("run", "--data", images, "--out", out, "--lr", "1e30", "--width", "8", "--steps", "5", "--no-progress")
    one_clean_error(result, "diverged", "marked failed", f"--out {out}")
    failed = json.loads((out / "failed.json").read_text())
    assert "diverged" in failed["error"]
    one_clean_error(cli("run", "--resume", out), "nothing to resume", "failed run")
    with pytest.warns(RuntimeWarning, match="replacing the failed run"):
        rerun = cli("run", "--data", images, "--out", out, "--width", "8", "--steps", "2", "--no-progress")
    assert rerun.exit_code == 0, rerun.output
    assert not (out / "failed.json").exists() and (out / "metrics.json").is_file()


def test_a_finished_or_foreign_folder_is_never_replaced(images: Path, tmp_path: Path):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "failed.json").write_text("{}")
    (out / "metrics.json").write_text("{}")
    one_clean_error(cli("run", "--data", images, "--out", out, "--steps", "1", "--no-progress"), "already holds files")
    assert sorted(p.name for p in out.iterdir()) == ["failed.json", "metrics.json"]


# -- beyond the list: integrity ---------------------------------------------------------------------
def test_a_run_records_its_checkpoints_sha256(tiny_run: Path):
    line = (tiny_run / "SHA256SUMS").read_text()
    digest = hashlib.sha256((tiny_run / "checkpoint.safetensors").read_bytes()).hexdigest()
    assert line == f"{digest}  checkpoint.safetensors\n"


def test_a_flipped_bit_is_a_clear_error(tiny_run: Path, tmp_path: Path):
    run = tmp_path / "flipped"
    shutil.copytree(tiny_run, run)
    data = bytearray((run / "checkpoint.safetensors").read_bytes())
    data[-3] ^= 0x01  # a bit of a tensor: the file still parses
    (run / "checkpoint.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its SHA-256"):
        inrkit.load(run)
    one_clean_error(cli("decode", run, "--item", "0", "-o", tmp_path / "x.png"), "SHA-256")
    one_clean_error(cli("verify", run), "SHA-256", code=1)
    one_clean_error(cli("analyze", "weights", run, "-o", tmp_path / "w.png"), "SHA-256")


def test_verify_a_good_and_an_old_run(tiny_run: Path):
    result = cli("verify", tiny_run)
    assert result.exit_code == 0 and "ok:" in result.output and "checkpoint.safetensors match" in result.output
    report = json.loads(cli("verify", tiny_run, "--json").output)
    assert report["checksums"] == ["checkpoint.safetensors"] and report["items"] == 2 and report["finished"]
    old = Path(__file__).parents[1] / "data" / "run-0.1.0"
    result = cli("verify", old)
    assert result.exit_code == 0 and "no SHA-256" in result.output, result.output


@pytest.mark.parametrize(
    "sums",
    ["0" * 64 + "  ../../etc/passwd\n", "nonsense\n", "0" * 64 + "  missing.safetensors\n", ""],
    ids=["traversal", "malformed", "missing-file", "no-checkpoint-line"],
)
def test_a_hostile_checksum_list_is_refused(tiny_run: Path, tmp_path: Path, sums: str):
    run = tmp_path / "r"
    shutil.copytree(tiny_run, run)
    (run / "SHA256SUMS").write_text(sums)
    with pytest.raises(CheckpointError):
        inrkit.load(run)


def test_verify_finds_a_shape_mismatch_without_decoding(tiny_run: Path, tmp_path: Path):
    def shrink(state):
        state["items.1.last.weight"] = torch.zeros(2, 2)
        return state

    run = craft(tiny_run, tmp_path / "bad", tensors=shrink)
    one_clean_error(cli("verify", run), "items.1.last.weight", "shape")


# -- round two: everything read back is validated --------------------------------------------------
@pytest.mark.parametrize("version", ["2x", 1.5, None, True, [1], -3])
def test_a_damaged_format_version_in_metrics_json_is_one_clean_error(tiny_run: Path, tmp_path: Path, version):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["format_version"] = version
    (run / "metrics.json").write_text(json.dumps(metrics))
    for args in (["verify", run], ["compress", run, "-o", tmp_path / "x.inrz"]):
        one_clean_error(cli(*args), "metrics.json", "format_version")
    assert not (tmp_path / "x.inrz").exists()


def test_verify_checks_an_inrz_file_and_the_ones_a_run_holds(tiny_run: Path, tmp_path: Path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    done = cli("compress", run, "-o", run / "small.inrz")
    assert done.exit_code == 0, done.output
    assert "small.inrz" in (run / "SHA256SUMS").read_text(), "the run's checksum list misses the .inrz it holds"
    ok = cli("verify", run / "small.inrz")
    assert ok.exit_code == 0 and "section" in ok.output, ok.output
    report = json.loads(cli("verify", run, "--json").output)
    assert report["inrz"] == [str(run / "small.inrz")] and "small.inrz" in report["checksums"]
    data = bytearray((run / "small.inrz").read_bytes())
    data[-3] ^= 0x40  # inside the last item's section
    (tmp_path / "flipped.inrz").write_bytes(bytes(data))
    one_clean_error(cli("verify", tmp_path / "flipped.inrz"), "checksum")
    (run / "small.inrz").write_bytes(bytes(data))
    one_clean_error(cli("verify", run), "small.inrz")
    one_clean_error(cli("verify", run / "metrics.json"), "neither a run folder nor an .inrz file")
