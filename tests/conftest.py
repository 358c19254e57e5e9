"""Shared fixtures: small generated images (tests never need real data) and fresh registries."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import inrkit
from inrkit.plugins import PluginRegistry

#: Tests the contract kits (inrkit.testing) define, which cannot carry this suite's marks: their
#: short fits train for 100-150 steps per plugin and belong to the slow lane.
SLOW_KIT_TESTS = {"test_short_fit_improves_psnr", "test_short_fit_runs_through_the_pipeline"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    import torch

    no_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if getattr(item, "originalname", None) in SLOW_KIT_TESTS:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("cuda") and not torch.cuda.is_available():
            item.add_marker(no_cuda)


@pytest.fixture(autouse=True)
def _no_plots_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Figures are off in tests (they cost seconds); tests of the plots turn them on explicitly."""
    monkeypatch.setenv("INRKIT_PLOTS", "0")


def make_image(height: int, width: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A smooth, structured uint8 test image (sums of a few random sinusoids)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    planes = []
    for _ in range(channels):
        f = rng.uniform(1.0, 4.0, size=(3, 2))
        p = rng.uniform(0, 2 * np.pi, size=3)
        v = sum(np.sin(2 * np.pi * (f[k, 0] * x + f[k, 1] * y) + p[k]) for k in range(3))
        planes.append((v - v.min()) / (v.max() - v.min() + 1e-9))
    img = np.stack(planes, axis=-1)
    return np.round(img * 255).astype(np.uint8)


def half_transparent_red(*leading: int) -> np.ndarray:
    """An 8×8 RGBA uint8 image (a stack of them with ``leading`` sizes): the left half opaque red,
    the right half transparent."""
    rgba = np.zeros((*leading, 8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., :, :4, 3] = 255
    return rgba


def assert_composited_over_white_or_kept(load) -> None:
    """``load(channels)`` (the first loaded item of :func:`half_transparent_red`): composited over
    white by default, the alpha kept with ``channels="rgba"``."""
    rgb = load("auto").data
    np.testing.assert_allclose(rgb[0, 0], [1, 0, 0])
    np.testing.assert_allclose(rgb[0, 7], [1, 1, 1])
    kept = load("rgba")
    assert kept.channels == 4 and kept.data[0, 7, 3] == 0.0


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """A folder of four small RGB PNGs, 24x24."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        iio.imwrite(folder / f"img{i}.png", make_image(24, 24, seed=i))
    return folder


#: The smallest run worth a run folder: two steps of a width-8 network.
TINY_RUN = {"model": {"width": 8, "layers": 3}, "train": {"steps": 2, "lr": 1e-3}}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 8x8 RGB PNGs, made once per test module."""
    folder = tmp_path_factory.mktemp("images")
    for i in range(2):
        iio.imwrite(folder / f"img{i}.png", make_image(8, 8, seed=i))
    return folder


@pytest.fixture(scope="module")
def tiny_run(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run folder of :func:`images` (:data:`TINY_RUN`), fitted once per test module."""
    return inrkit.fit(TINY_RUN, data=[str(images)], out=tmp_path_factory.mktemp("runs") / "tiny").run_dir


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], str]:
    """Write a module into a temporary import path; returns its importable name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        created.append(name)
        return name

    yield write
    for name in created:
        sys.modules.pop(name, None)


def entry_point(name: str, module: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=module, group="inrkit")


def builtin_entry_points() -> list[importlib.metadata.EntryPoint]:
    """The built-ins exactly as installed (they must be installed: we never fake them)."""
    return [ep for ep in importlib.metadata.entry_points(group="inrkit") if ep.dist and ep.dist.name == "inrkit"]


@pytest.fixture
def fresh_registry() -> Callable[..., PluginRegistry]:
    """A new registry over the built-ins plus any extra entry points."""

    def make(*extra: importlib.metadata.EntryPoint, builtins: bool = True) -> PluginRegistry:
        eps = (builtin_entry_points() if builtins else []) + list(extra)
        return PluginRegistry(entry_points=eps).load()

    return make
