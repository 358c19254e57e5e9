"""The contract kits, run over every built-in plugin of each kind (as a plugin author would)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import make_image

from inrkit.plugins import get_registry
from inrkit.testing import ActivationContract, SharingStrategyContract, SignalContract

def _builtin_names(kind: str) -> list[str]:
    return [e.name for e in get_registry().entries(kind) if e.distribution == "inrkit"]


class TestEveryActivation(ActivationContract):
    @pytest.fixture(params=_builtin_names("activation"))
    def activation_name(self, request: pytest.FixtureRequest) -> str:
        return request.param


class TestEverySharingStrategy(SharingStrategyContract):
    @pytest.fixture(params=_builtin_names("sharing"))
    def sharing_name(self, request: pytest.FixtureRequest) -> str:
        return request.param


class TestImageSignal(SignalContract):
    signal = "image"  # the built-in samples


class TestImageSignalFromFiles(SignalContract):
    signal = "image"

    @pytest.fixture
    def sources(self, tmp_path: Path) -> list[str]:
        folder = tmp_path / "in"
        folder.mkdir()
        for i, (h, w) in enumerate([(20, 16), (12, 18)]):
            iio.imwrite(folder / f"img{i}.png", make_image(h, w, seed=i))
        return [str(folder)]


class TestSuperResSignal(TestImageSignalFromFiles):
    signal = "superres"


class TestVideoSignal(SignalContract):
    signal = "video"
    options = {"frames": 3}

    @pytest.fixture
    def sources(self, tmp_path: Path) -> list[str]:
        frames = np.stack([np.roll(make_image(16, 24, seed=0), 2 * t, axis=1) for t in range(4)])
        path = tmp_path / "clip.mp4"
        iio.imwrite(path, frames, plugin="pyav", codec="libx264", fps=10)
        return [str(path)]

    def round_trip_sources(self, written: list[Path], folder: Path) -> list[str]:
        return [str(folder / "frames")]  # the frames, not the re-encoded (lossy) clip


def test_every_builtin_plugin_kind_has_a_kit_run_here():
    kinds = {e.kind for e in get_registry().entries() if e.distribution == "inrkit"}
    assert kinds == {"activation", "sharing", "signal", "callback"}
    signals = {c.signal for c in (TestImageSignal, TestSuperResSignal, TestVideoSignal)}
    assert signals == set(_builtin_names("signal"))
