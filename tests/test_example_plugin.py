"""The example third-party plugin under examples/: discovered through its entry point, usable
from the CLI, and passing the contract kit — with a dist-info on the path, as an install leaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from inrkit.cli import main
from inrkit.plugins import get_registry, reset_registry

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "inrkit-sinc"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Put the example's module and a dist-info (metadata + entry points) on the path."""
    site = tmp_path / "site"
    dist = site / "inrkit_sinc-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: inrkit-sinc\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[inrkit]\nsinc = inrkit_sinc\n")
    paths = [str(site), str(EXAMPLE / "src")]
    for path in reversed(paths):
        monkeypatch.syspath_prepend(path)
    reset_registry()
    yield paths
    sys.modules.pop("inrkit_sinc", None)
    reset_registry()


def test_example_plugin_is_discovered_and_listed(installed):
    entry = get_registry().entry("activation", "sinc")
    assert (entry.distribution, entry.version, entry.plugin) == ("inrkit-sinc", "0.1.0", "sinc")
    result = CliRunner().invoke(main, ["plugins", "--json"])
    listed = {p["name"]: p for p in json.loads(result.output)["plugins"]}
    assert listed["sinc"]["distribution"] == "inrkit-sinc" and listed["siren"]["distribution"] == "inrkit"


def test_example_plugin_runs_from_the_cli(installed, image_dir: Path, tmp_path: Path):
    result = CliRunner().invoke(
        main,
        ["run", "--activation", "sinc", "--set", "activation.omega=8", "--data", str(image_dir),
         "--width", "16", "--steps", "3", "--out", str(tmp_path / "r"), "--no-progress", "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["activation"] == "sinc"


def test_example_plugin_passes_the_contract_kit(installed):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*installed, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True, text=True, env=env, cwd=EXAMPLE,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
