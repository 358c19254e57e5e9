"""``inrkit doctor``: the report's keys and types, and that a broken environment is reported, not raised."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import entry_point

from inrkit.tools import doctor
from inrkit.cli import main

SECTIONS = {
    "format_version", "inrkit", "python", "platform", "torch", "devices", "precision", "plugins", "runs",
    "compile", "environment", "problems",
}


def doctor_json(*args: str) -> dict:
    result = CliRunner().invoke(main, ["doctor", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_json_keys_and_types(tmp_path: Path):
    report = doctor_json("--no-compile-probe", "--runs", str(tmp_path / "runs"))
    assert set(report) == SECTIONS
    assert report["format_version"] == doctor.FORMAT_VERSION
    for key in SECTIONS - {"format_version", "environment", "problems"}:
        assert isinstance(report[key], dict) and report[key]["error"] is None, (key, report[key])

    assert report["inrkit"]["version"] == doctor.__version__
    assert Path(report["inrkit"]["location"], "doctor.py").is_file()
    assert isinstance(report["inrkit"]["install"], str)
    assert re.fullmatch(r"3\.\d+\.\d+\w*", report["python"]["version"])
    assert isinstance(report["platform"]["cpu_count"], int) and isinstance(report["platform"]["system"], str)

    t = report["torch"]
    assert t["version"] == torch.__version__
    assert isinstance(t["threads"], int) and t["threads"] >= 1 and isinstance(t["interop_threads"], int)
    assert t["cuda"] == torch.version.cuda and (t["cudnn"] is None or isinstance(t["cudnn"], str))
    assert t["default_device"] == ("cuda" if torch.cuda.is_available() else "cpu")

    d = report["devices"]
    assert d["cuda_available"] is torch.cuda.is_available() and d["cuda_device_count"] == torch.cuda.device_count()
    cpu, *gpus = d["items"]
    assert cpu["name"] == "cpu" and isinstance(cpu["memory_total_bytes"], int) and cpu["memory_total_bytes"] > 0
    assert len(gpus) == torch.cuda.device_count()
    for gpu in gpus:
        assert isinstance(gpu["memory_free_bytes"], int) and isinstance(gpu["bf16"], bool) and gpu["error"] is None

    p = report["precision"]
    assert isinstance(p["tf32_supported"], bool) and isinstance(p["bf16_cpu_autocast"], bool)
    assert isinstance(p["tf32_matmul"], str) and isinstance(p["tf32_cudnn"], str)
    assert p["bf16_cuda"] is None if not gpus else isinstance(p["bf16_cuda"], bool)

    plugins = report["plugins"]
    assert set(plugins["by_kind"]) == {"activation", "sharing", "signal", "callback"}
    builtins = {
        "activation": {"siren", "gauss", "wire", "finer", "pemlp"},
        "sharing": {"minr", "separate", "row", "column", "grid", "id", "coinpp"},
        "signal": {"image", "video", "superres"},
        "callback": {"progress", "jsonl", "tensorboard"},
    }
    for kind, names in builtins.items():
        assert names <= set(plugins["by_kind"][kind]), kind
    assert {"kind", "name", "distribution", "version", "plugin"} <= set(plugins["entries"][0])
    assert plugins["failures"] == [] and plugins["conflicts"] == []

    runs = report["runs"]
    assert runs["path"] == str(tmp_path / "runs") and runs["exists"] is False and runs["writable"] is True
    assert runs["checked"] == str(tmp_path) and isinstance(runs["free_bytes"], int) and runs["free_bytes"] > 0
    assert not (tmp_path / "runs").exists(), "the check must not create the runs folder"
    assert list(tmp_path.iterdir()) == [], "the check must leave no file behind"

    assert report["compile"] == {
        "checked": False, "works": None, "device": None, "seconds": None,
        "timeout_seconds": doctor.COMPILE_TIMEOUT, "error": None,
    }
    assert isinstance(report["environment"], dict) and report["problems"] == []


def test_text_report_names_every_section(tmp_path: Path):
    result = CliRunner().invoke(main, ["doctor", "--no-compile-probe", "--runs", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for label in ("inrkit", "python", "platform", "torch", "devices", "precision", "plugins", "runs", "compile", "env", "problems"):
        assert re.search(rf"^{label}\b", result.output, re.MULTILINE), label
    assert f"{tmp_path}: writable" in result.output
    assert "not checked (--no-compile-probe)" in result.output
    assert "problems  none" in result.output


def test_a_plugin_that_fails_to_load_is_reported(fresh_registry, plugin_module):
    plugin_module("doctor_broken_plugin", "raise ImportError('needs libfoo 2.0')")
    with pytest.warns(RuntimeWarning, match="needs libfoo"):
        registry = fresh_registry(entry_point("broken", "doctor_broken_plugin"))
    report = doctor.gather(compile_probe=False, registry=registry)
    failures = report["plugins"]["failures"]
    assert [f["plugin"] for f in failures] == ["broken"]
    assert failures[0]["error"] == "ImportError: needs libfoo 2.0"
    assert failures[0]["message"] == registry.failures[0].describe()
    assert "minr" in report["plugins"]["by_kind"]["sharing"], "the other plugins still load"
    assert any("needs libfoo 2.0" in p for p in report["problems"])
    text = doctor.format_report(report)
    assert "failed     plugin 'broken'" in text and "needs libfoo 2.0" in text


def test_a_runs_folder_inside_a_file_is_reported_not_raised(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    report = doctor_json("--no-compile-probe", "--runs", str(blocker / "runs"))
    runs = report["runs"]
    assert runs["writable"] is False and "not a folder" in runs["error"]
    assert isinstance(runs["free_bytes"], int)
    assert any(p.startswith("runs: ") and "not writable" in p for p in report["problems"])

    report = doctor_json("--no-compile-probe", "--runs", str(blocker))
    assert report["runs"]["exists"] is True and report["runs"]["writable"] is False


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_runs_folder_is_reported(tmp_path: Path):
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o500)
    try:
        result = CliRunner().invoke(main, ["doctor", "--no-compile-probe", "--runs", str(runs)])
    finally:
        runs.chmod(0o700)
    assert result.exit_code == 0, result.output
    assert f"{runs}: NOT writable" in result.output


def test_an_unwritable_runs_folder_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """As root, where permissions do not stop a write, simulate the failure the write would raise."""

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(doctor.tempfile, "NamedTemporaryFile", refuse)
    report = doctor.gather(runs=tmp_path, compile_probe=False)
    assert report["runs"]["writable"] is False
    assert report["runs"]["error"] == f"cannot write in {tmp_path}: Permission denied"
    assert "NOT writable" in doctor.format_report(report)


def test_no_compile_probe_runs_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    def forbidden(*args, **kwargs):
        raise AssertionError("the compile probe ran")

    monkeypatch.setattr(doctor.subprocess, "run", forbidden)
    report = doctor_json("--no-compile-probe", "--runs", str(tmp_path))
    assert report["compile"]["checked"] is False and report["compile"]["works"] is None


def test_a_failing_compile_probe_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(doctor, "_COMPILE_PROBE", "raise RuntimeError('Compiler: cc is not found')")
    report = doctor.gather(runs=tmp_path)
    assert report["compile"]["works"] is False
    assert report["compile"]["error"] == "RuntimeError: Compiler: cc is not found"
    assert "compile: RuntimeError: Compiler: cc is not found" in report["problems"]


def test_the_compile_probe_is_time_limited(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(doctor, "_COMPILE_PROBE", "import time; time.sleep(30)")
    report = doctor_json("--runs", str(tmp_path), "--compile-timeout", "1")
    assert report["compile"]["works"] is False and report["compile"]["error"] == "timed out after 1 s"
    assert report["compile"]["seconds"] < 10


@pytest.mark.slow
def test_the_compile_probe_compiles(tmp_path: Path):
    report = doctor.gather(runs=tmp_path)
    assert report["compile"]["works"] is True, report["compile"]
    assert report["compile"]["device"] == str(report["torch"]["default_device"])
    assert report["compile"]["seconds"] > 0


def test_a_broken_torch_is_reported_section_by_section(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    def broken(*args, **kwargs):
        raise RuntimeError("libtorch_cpu.so: cannot open shared object file\nmore detail")

    monkeypatch.setattr(torch, "get_num_threads", broken)
    monkeypatch.setattr(torch.cuda, "is_available", broken)
    report = doctor.gather(runs=tmp_path, compile_probe=False)
    message = "RuntimeError: libtorch_cpu.so: cannot open shared object file"
    assert report["torch"]["error"] == message
    assert report["devices"]["error"] == message
    assert report["devices"]["items"][0]["name"] == "cpu", "the CPU entry is made before torch is asked"
    assert report["python"]["error"] is None and report["runs"]["writable"] is True
    assert f"torch: {message}" in report["problems"]
    doctor.format_report(report)  # renders with errors everywhere


def test_the_text_report_renders_a_report_of_errors():
    """The formatter must survive whatever gather could produce, here every probe failing."""
    empty: dict = {"format_version": 1}
    for name, fields in (
        ("inrkit", {"version": "0.1.0", "location": None, "install": None}),
        ("python", {"version": None, "implementation": None, "executable": None}),
        ("platform", {"platform": None, "cpu_count": None}),
        ("torch", {"version": None}),
        ("devices", {"cuda_available": None, "cuda_device_count": None, "items": []}),
        ("precision", {"tf32_supported": None, "tf32_matmul": None, "tf32_cudnn": None, "bf16_cuda": None, "bf16_cpu_autocast": None}),
        ("plugins", {"by_kind": {}, "entries": [], "failures": [], "conflicts": []}),
        ("runs", {"path": "/x/runs", "exists": None, "writable": None, "checked": None, "free_bytes": None}),
    ):
        empty[name] = {**fields, "error": "OSError: broken"}
    empty["compile"] = {"checked": True, "works": False, "device": None, "seconds": None, "timeout_seconds": 1.0, "error": "boom"}
    empty["environment"] = {}
    empty["problems"] = ["x"]
    text = doctor.format_report(empty)
    assert "torch     not importable  (error: OSError: broken)" in text
    assert "torch.compile does not work here: boom" in text


def test_environment_lists_inrkit_and_cuda_variables_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("INRKIT_STRICT_PLUGINS", "0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    monkeypatch.setenv("SOME_API_TOKEN", "secret")
    env = doctor_json("--no-compile-probe", "--runs", str(tmp_path))["environment"]
    assert env["INRKIT_STRICT_PLUGINS"] == "0" and env["CUDA_VISIBLE_DEVICES"] == "1,0"
    assert env["INRKIT_PLOTS"] == "0"  # set by conftest for every test
    assert "SOME_API_TOKEN" not in env


def test_version_names_torch_and_the_device():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert result.output.startswith(f"inrkit {doctor.__version__} (torch {torch.__version__}, {device}")
    assert result.output.rstrip().endswith(")")
    assert "--version" in CliRunner().invoke(main, ["--help"]).output


def test_version_survives_a_broken_torch(monkeypatch: pytest.MonkeyPatch):
    def broken(name):
        raise OSError("libcudart.so.12: cannot open shared object file")

    monkeypatch.setattr("inrkit.devices.resolve_device", broken)
    line = doctor.version_line()
    assert line == (
        f"inrkit {doctor.__version__} (torch {torch.__version__}, "
        "device unknown: OSError: libcudart.so.12: cannot open shared object file)"
    )
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert doctor.version_line().startswith(f"inrkit {doctor.__version__} (torch not importable: ModuleNotFoundError: ")


def test_gpus_are_reported_with_their_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The CUDA path, with torch.cuda faked: two GPUs, the second of which cannot report its memory."""
    current = [0]

    class Props:
        name = "Fake GPU 80GB"
        total_memory = 80 * 2**30

    class Device:
        def __init__(self, index: int) -> None:
            self.index = index

        def __enter__(self) -> None:
            current[0] = self.index

        def __exit__(self, *exc: object) -> None:
            current[0] = 0

    def mem_get_info(index: int) -> tuple[int, int]:
        if index == 1:
            raise RuntimeError("CUDA error: out of memory")
        return 70 * 2**30, 80 * 2**30

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: Props())
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (9, 0) if index == 0 else (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: Props.name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: current[0] == 0)
    monkeypatch.setattr(torch.cuda, "device", Device)
    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)

    report = doctor.gather(runs=tmp_path, compile_probe=False)
    devices = report["devices"]
    assert devices["cuda_available"] is True and devices["cuda_device_count"] == 2 and devices["error"] is None
    cpu, first, second = devices["items"]
    assert first == {
        "name": "cuda:0", "type": "cuda", "model": "Fake GPU 80GB", "memory_total_bytes": 80 * 2**30,
        "memory_free_bytes": 70 * 2**30, "capability": "9.0", "bf16": True, "tf32": True, "error": None,
    }
    assert second["capability"] == "7.5" and second["bf16"] is False and second["tf32"] is False
    assert second["memory_free_bytes"] is None and second["error"] == "RuntimeError: CUDA error: out of memory"
    assert report["precision"]["tf32_supported"] is True and report["precision"]["bf16_cuda"] is False
    assert report["torch"]["default_device"] == "cuda"
    assert "device cuda:1: RuntimeError: CUDA error: out of memory" in report["problems"]
    text = doctor.format_report(report)
    assert "cuda:0  Fake GPU 80GB  memory 80.0 GiB total, 70.0 GiB free  compute 9.0  bf16 yes  tf32 yes" in text
    assert doctor.version_line() == f"inrkit {doctor.__version__} (torch {torch.__version__}, cuda: Fake GPU 80GB (+1 more))"
