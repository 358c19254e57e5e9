"""End to end through the command line: fits, run folders, bad inputs, reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch
from click.testing import CliRunner
from conftest import make_image

import inrkit
from inrkit.runs import checkpoint
from inrkit.cli import main
from inrkit.plugins import get_registry

TINY = ["--width", "64", "--steps", "60", "--no-progress"]


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def run_json(*args: str) -> dict:
    code, out = invoke("run", "--json", *args)
    assert code == 0, out
    return json.loads(out)


@pytest.mark.parametrize("sharing", ["minr", "separate"])
def test_fit_tiny_images_end_to_end(image_dir: Path, tmp_path: Path, sharing: str):
    out = tmp_path / "run"
    metrics = run_json("--data", str(image_dir), "--sharing", sharing, "--out", str(out), *TINY, "--lr", "1e-3")
    start = metrics["history"][0]["psnr"]
    assert metrics["psnr_mean"] > start + 10, (start, metrics["psnr_mean"])
    assert metrics["psnr_mean"] > 25
    assert len(metrics["items"]) == 4 and all(0 < it["ssim"] <= 1 for it in metrics["items"])
    for key in ("psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "params", "items", "steps", "seconds"):
        assert key in metrics
    assert metrics["steps"] == 60
    assert set(metrics["params"]) == {"total", "shared", "per_item"}
    # The run folder holds everything the issue promises.
    assert json.loads((out / "metrics.json").read_text()) == metrics
    config = json.loads((out / "config.json").read_text())
    assert config["sharing"]["name"] == sharing and config["activation"]["omega"] == 30.0
    assert sorted(p.name for p in (out / "recon").iterdir()) == [f"img{i}.png" for i in range(4)]
    meta = checkpoint.read_metadata(out / "checkpoint.safetensors")
    assert meta["plugins"]["sharing"]["name"] == sharing
    assert meta["plugins"]["activation"]["distribution"] == "inrkit"
    assert [it["name"] for it in meta["items"]] == [f"img{i}" for i in range(4)]
    assert meta["items"][0]["shape"] == [24, 24]


def test_table_output_and_default_run_folder(image_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out = invoke("run", "--data", str(image_dir / "img0.png"), "--steps", "3", "--width", "8", "--no-progress")
    assert code == 0, out
    assert "img0" in out and "PSNR" in out and "mean ± std" in out
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == 1 and folders[0].name.endswith("siren-minr")


def test_same_seed_gives_identical_metrics(image_dir: Path, tmp_path: Path):
    args = ["--data", str(image_dir), "--width", "16", "--steps", "15", "--no-progress", "--seed", "7"]
    a = run_json(*args, "--out", str(tmp_path / "a"))
    b = run_json(*args, "--out", str(tmp_path / "b"))
    assert [it["psnr"] for it in a["items"]] == [it["psnr"] for it in b["items"]]
    assert a["history"] == b["history"]
    from safetensors.torch import load_file

    ta = load_file(tmp_path / "a" / "checkpoint.safetensors")
    tb = load_file(tmp_path / "b" / "checkpoint.safetensors")
    assert ta.keys() == tb.keys()
    assert all(torch.equal(ta[k], tb[k]) for k in ta)  # bit for bit
    c = run_json(*args[:-1], "8", "--out", str(tmp_path / "c"))
    assert c["history"] != a["history"]


def test_config_file_and_set_overrides(image_dir: Path, tmp_path: Path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'data = ["{image_dir}"]\n[sharing]\nname = "minr"\nprojection = false\n'
        "[model]\nwidth = 8\nlayers = 4\n[train]\nsteps = 2\n"
    )
    metrics = run_json("--config", str(cfg), "--set", "train.steps=3", "--out", str(tmp_path / "r"), "--no-progress")
    assert metrics["steps"] == 3
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["sharing"] == {"name": "minr", "projection": "none", "rank": None, "shared_layers": None}
    assert config["model"] == {"width": 8, "layers": 4}
    yaml_cfg = tmp_path / "run.yaml"
    yaml_cfg.write_text("activation:\n  name: siren\n  omega: 20\ntrain:\n  steps: 1\nmodel:\n  width: 8\n")
    run_json("--config", str(yaml_cfg), "--data", str(image_dir), "--out", str(tmp_path / "y"), "--no-progress")
    assert json.loads((tmp_path / "y" / "config.json").read_text())["activation"]["omega"] == 20


def test_flag_naming_the_default_plugin_keeps_config_options(image_dir: Path, tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[sharing]\nprojection = false\n[model]\nwidth = 8\n[train]\nsteps = 1\n")
    r = cli("run", "--config", cfg, "--sharing", "minr", "--data", image_dir, "--out", tmp_path / "r", "--no-progress")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "r" / "config.json").read_text())["sharing"]["projection"] == "none"


def test_plugins_command_lists_builtins():
    code, out = invoke("plugins", "--json")
    assert code == 0
    listed = {(p["kind"], p["name"]): p for p in json.loads(out)["plugins"]}
    for key in [("activation", "siren"), ("sharing", "minr"), ("sharing", "separate"), ("signal", "image")]:
        assert listed[key]["distribution"] == "inrkit" and listed[key]["version"]
    code, out = invoke("plugins")
    assert code == 0 and "siren" in out and "distribution" in out


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--sharing", "minr", "--n", "4", "--width", "256", "--layers", "5"], {"total": 466700, "shared": 197376, "per_item": 67331}),
        (["--sharing", "separate", "--n", "4"], {"total": 795660, "shared": 0, "per_item": 198915}),
        (["--sharing", "minr", "--n", "100"], {"total": 6930476, "shared": 197376, "per_item": 67331}),
        (["--sharing", "minr", "--set", "sharing.shared_layers=[3,4]"], {"total": 664076, "shared": 131584, "per_item": 133123}),
    ],
)
def test_params_command(args, expected):
    code, out = invoke("params", "--activation", "siren", *args, "--json")
    assert code == 0, out
    assert json.loads(out) == expected


def test_params_memory_estimate_adds_up_and_follows_the_items(tmp_path: Path):
    code, out = invoke("params", "--n", "10", "--size", "16x12", "--width", "16", "--memory", "--json")
    assert code == 0, out
    report = json.loads(out)
    parts = report["memory_parts"]
    assert report["memory_bytes"] == sum(parts.values()) and parts["baseline"] > 0
    assert parts["items"] == parts["targets"] == 10 * 16 * 12 * 3 * 4
    assert parts["optimiser"] == 2 * parts["gradients"] == 2 * 4 * report["total"]
    # The same items from files give the same counts; a mini-batch holds fewer activations.
    for i in range(10):
        iio.imwrite(tmp_path / f"img{i}.png", make_image(16, 12, seed=i))
    code, out = invoke("params", "--data", str(tmp_path), "--width", "16", "--memory", "--json", "--set", "train.chunk_points=64")
    from_files = json.loads(out)
    assert code == 0 and from_files["total"] == report["total"] and from_files["memory_parts"]["items"] == parts["items"]
    code, out = invoke("params", "--data", str(tmp_path), "--width", "16", "--memory", "--json", "--set", "train.chunk_points=64",
                       "--set", "train.items_per_step=2")
    assert json.loads(out)["memory_parts"]["activations"] * 5 == from_files["memory_parts"]["activations"]
    code, out = invoke("params", "--n", "2", "--size", "16xa", "--memory")
    assert code == 2 and "--size '16xa'" in out and "Traceback" not in out


def _corrupt(tmp: Path) -> list[str]:
    (tmp / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return ["--data", str(tmp / "bad.jpg")]


def _empty(tmp: Path) -> list[str]:
    (tmp / "empty").mkdir()
    return ["--data", str(tmp / "empty")]


BAD_INPUTS = {
    "missing-file": (lambda t: ["--data", str(t / "nope.png")], "no such file or folder"),
    "corrupt-image": (_corrupt, "cannot read image"),
    "empty-folder": (_empty, "holds no images"),
    "unknown-activation": (lambda t: ["--activation", "sirne"], "unknown activation 'sirne'; valid activation names: finer, gauss, pemlp, siren"),
    "unknown-sharing": (lambda t: ["--sharing", "nope"], "valid sharing names"),
    "unknown-option-key": (lambda t: ["--set", "activation.omgea=3"], "activation.omgea: unknown key"),
    "bad-option-value": (lambda t: ["--set", "activation.omega=-1"], "activation.omega"),
    "bad-option-type": (lambda t: ["--set", "sharing.projection=maybe"], "sharing.projection"),
    "unknown-config-section": (lambda t: ["--set", "trian.steps=3"], "trian: unknown key"),
    "zero-steps": (lambda t: ["--steps", "0"], "train.steps: Input should be greater than 0"),
    "negative-steps": (lambda t: ["--steps", "-5"], "train.steps"),
    "bad-set-syntax": (lambda t: ["--set", "train.steps"], "expected KEY=VALUE"),
    "missing-config-file": (lambda t: ["--config", str(t / "none.toml")], "config file not found"),
    "cuda-unavailable": (lambda t: ["--device", "cuda:99"], "train.device"),
    "bad-shared-layer": (lambda t: ["--set", "sharing.shared_layers=[9]"], "do not exist"),
    "nan-loss": (lambda t: ["--lr", "1e30"], "diverged"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_gives_one_clear_message(case: str, image_dir: Path, tmp_path: Path):
    make_args, expected = BAD_INPUTS[case]
    args = make_args(tmp_path)
    if "--data" not in args:
        args += ["--data", str(image_dir)]
    result = CliRunner().invoke(main, ["run", "--width", "8", "--steps", "3", "--no-progress", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert expected in result.output, result.output
    assert result.output.startswith("Error:") or result.output.startswith("Usage:"), result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "inf"], "train.lr"),
        (["--set", "activation.omega=Infinity"], "activation.omega"),
        (["--seed", "99999999999999999999999"], "train.seed"),
        (["--seed", "-1"], "train.seed"),
        (["--data", ""], "empty path"),
    ],
)
def test_more_bad_inputs(image_dir: Path, tmp_path: Path, args, message):
    data = [] if "--data" in args else ["--data", image_dir]
    r = cli("run", *data, *args, "--width", "8", "--steps", "1", "--out", tmp_path / "o", "--no-progress")
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_existing_run_folder_is_never_overwritten(image_dir: Path, tmp_path: Path):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    code, output = invoke("run", "--data", str(image_dir), "--out", str(out), "--steps", "1", "--no-progress")
    assert code != 0 and "already holds files" in output
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    assert (out / "precious.txt").read_text() == "mine"


def test_failed_run_keeps_what_was_written(image_dir: Path, tmp_path: Path):
    out = tmp_path / "diverge"
    code, output = invoke("run", "--data", str(image_dir), "--out", str(out), "--lr", "1e30", "--width", "8", "--steps", "5", "--no-progress")
    assert code != 0 and "diverged" in output
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 1e30
    assert not (out / "checkpoint.safetensors").exists()


def test_reconstruction_write_failure_keeps_checkpoint_and_metrics(image_dir: Path, tmp_path: Path, monkeypatch):
    cls = get_registry().get("signal", "image")

    def broken(self, item, reconstruction, folder):
        raise OSError("disk full")

    monkeypatch.setattr(cls, "save", broken)
    result = cli("run", "--data", image_dir, "--width", "8", "--steps", "2", "--out", tmp_path / "r", "--no-progress")
    assert result.exit_code != 0 and "disk full" in result.output and "checkpoint and metrics.json are saved" in result.output
    assert (tmp_path / "r" / "checkpoint.safetensors").is_file() and (tmp_path / "r" / "metrics.json").is_file()
    assert inrkit.load(tmp_path / "r").decode(0).shape == (24, 24, 3)


def test_no_recon_writes_no_reconstructions_and_decode_renders_them_later(image_dir: Path, tmp_path: Path):
    out = tmp_path / "r"
    result = cli("run", "--data", image_dir, "--width", "8", "--steps", "2", "--out", out, "--no-progress", "--no-recon")
    assert result.exit_code == 0, result.output
    assert not (out / "recon").exists() and (out / "metrics.json").is_file()
    assert len(json.loads((out / "metrics.json").read_text())["items"]) == 4  # every item still scored
    assert cli("verify", out).exit_code == 0
    decoded = cli("decode", out, "--all", "-o", tmp_path / "later")
    assert decoded.exit_code == 0, decoded.output
    assert sorted(p.name for p in (tmp_path / "later").iterdir()) == [f"img{i}.png" for i in range(4)]
    api = inrkit.fit({"model": {"width": 8}, "train": {"steps": 2}}, data=str(image_dir), out=tmp_path / "api", recon=False)
    assert api.run_dir is not None and not (api.run_dir / "recon").exists()
    assert api.reconstructions[0].shape == (24, 24, 3)  # still rendered on demand


def test_help_lists_commands():
    code, out = invoke("--help")
    assert code == 0 and all(cmd in out for cmd in ("run", "plugins", "params"))


def test_shell_expanded_globs_after_data_are_sources(image_dir: Path, tmp_path: Path):
    files = sorted(str(p) for p in image_dir.iterdir())
    metrics = run_json("--data", *files, "--width", "8", "--steps", "2", "--out", str(tmp_path / "g"), "--no-progress")
    assert [it["name"] for it in metrics["items"]] == ["img0", "img1", "img2", "img3"]
    metrics = run_json(*files[:2], "--width", "8", "--steps", "2", "--out", str(tmp_path / "p"), "--no-progress")
    assert len(metrics["items"]) == 2
