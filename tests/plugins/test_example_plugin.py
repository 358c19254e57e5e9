"""The example third-party plugins under examples/ (an activation, a sharing strategy, a signal):
each discovered through its entry point, usable from the CLI, and passing its contract kit —
with a dist-info on the path, as an install leaves."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from inrkit.cli import main
from inrkit.plugins import get_registry, reset_registry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclasses.dataclass(frozen=True)
class Example:
    """One example package: ``examples/<dist>/src/<module>.py``, entry point ``<name> = <module>``."""

    dist: str
    kind: str
    name: str
    #: ``inrkit run`` arguments that select the plugin (plus what it needs to fit at all).
    run_args: tuple[str, ...]
    #: What the run's data are, and the suffix of its reconstructions.
    data: str = "images"
    recon_suffix: str = ".png"

    @property
    def module(self) -> str:
        return self.dist.replace("-", "_")

    @property
    def folder(self) -> Path:
        return EXAMPLES / self.dist


EXAMPLE_PACKAGES = [
    Example("inrkit-sinc", "activation", "sinc", ("--activation", "sinc", "--set", "activation.omega=8")),
    Example("inrkit-film", "sharing", "film", ("--sharing", "film")),
    Example(
        "inrkit-audio", "signal", "audio", ("--signal", "audio", "--set", "activation.first_omega=300"),
        data="wav", recon_suffix=".wav",
    ),
]


@pytest.fixture(params=EXAMPLE_PACKAGES, ids=lambda example: example.dist)
def example(request: pytest.FixtureRequest) -> Example:
    return request.param


@pytest.fixture
def installed(example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Put the example's module and a dist-info (metadata + entry points) on the path."""
    site = tmp_path / "site"
    dist = site / f"{example.module}-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {example.dist}\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(f"[inrkit]\n{example.name} = {example.module}\n")
    paths = [str(site), str(example.folder / "src")]
    for path in reversed(paths):
        monkeypatch.syspath_prepend(path)
    reset_registry()
    yield paths
    sys.modules.pop(example.module, None)
    reset_registry()


def write_tone_wav(path: Path, n: int = 400, rate: int = 8000) -> Path:
    """A short mono 16-bit WAV of a 440 Hz tone."""
    samples = np.round(0.5 * 32767 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return path


def test_example_plugin_is_discovered_and_listed(example: Example, installed: list[str]) -> None:
    entry = get_registry().entry(example.kind, example.name)
    assert (entry.distribution, entry.version, entry.plugin) == (example.dist, "0.1.0", example.name)
    result = CliRunner().invoke(main, ["plugins", "--json"])
    listed = {p["name"]: p for p in json.loads(result.output)["plugins"]}
    assert listed[example.name]["distribution"] == example.dist and listed["siren"]["distribution"] == "inrkit"


def test_example_plugin_runs_from_the_cli(
    example: Example, installed: list[str], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if example.data == "wav":
        data = str(write_tone_wav(tmp_path / "tone.wav"))
    else:
        data = str(request.getfixturevalue("image_dir"))
    out = tmp_path / "r"
    tiny = ["--width", "16", "--steps", "3", "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(main, ["run", *example.run_args, "--data", data, *tiny])
    assert result.exit_code == 0, result.output
    assert "PSNR (dB)" in result.output and "mean ± std" in result.output  # the metrics table
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics[example.kind] == example.name
    written = sorted((out / "recon").iterdir())
    assert written and all(p.suffix == example.recon_suffix for p in written), written
    assert len(written) == len(metrics["items"])


@pytest.mark.slow  # runs the example's own test suite in a subprocess
def test_example_plugin_passes_the_contract_kit(example: Example, installed: list[str]) -> None:
    # One thread, as in test_distributed: the kits' models are tiny, and on a busy machine
    # oversubscribed threads make them several times slower.
    path = os.pathsep.join([*installed, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example.folder / "tests")],
        check=False, capture_output=True, text=True, env=env, cwd=example.folder,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
