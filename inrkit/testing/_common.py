"""What the contract kits share: the registration and options checks, small test images, devices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pydantic
import pytest
import torch

from inrkit.errors import ConfigError
from inrkit.interfaces import PLUGIN_BASES
from inrkit.plugins import PluginRegistry, get_registry


def smooth_test_image(size: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth RGB image in [0, 1] (sums of sinusoids) that any working INR can fit quickly."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    planes = []
    for _ in range(3):
        f = rng.uniform(0.5, 3.0, size=(3, 2))
        p = rng.uniform(0, 2 * np.pi, size=3)
        v = sum(np.sin(2 * np.pi * (f[k, 0] * x + f[k, 1] * y) + p[k]) for k in range(3))
        planes.append((v - v.min()) / (v.max() - v.min()))
    return np.stack(planes, axis=-1).astype(np.float32)


def write_test_images(folder: Path, count: int = 2, size: int = 32) -> list[Path]:
    """``count`` smooth 8-bit PNGs in ``folder`` (created), for fits through the whole pipeline."""
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"smooth{seed}.png" for seed in range(count)]
    for seed, path in enumerate(paths):
        iio.imwrite(path, np.round(smooth_test_image(size, seed=seed) * 255).astype(np.uint8))
    return paths


def devices() -> Sequence[str]:
    """``cpu``, and ``cuda`` when this machine has a GPU."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


class PluginContract:
    """The checks every plugin kind shares: registration through the registry, and its options.

    A kit subclasses it, sets ``kind`` and provides the ``plugin_name`` fixture.
    """

    #: The plugin kind the kit checks.
    kind: ClassVar[str]
    #: Registry to check against; ``None`` is the installed one (entry points).
    registry: ClassVar[PluginRegistry | None] = None

    @pytest.fixture
    def plugin_registry(self) -> PluginRegistry:
        return self.registry or get_registry()

    @pytest.fixture
    def plugin_name(self) -> str:
        raise NotImplementedError("the kit provides the plugin's name")

    def test_registered_under_its_name(self, plugin_name: str, plugin_registry: PluginRegistry) -> None:
        entry = plugin_registry.entry(self.kind, plugin_name)
        assert entry.cls.name == plugin_name
        assert issubclass(entry.cls, PLUGIN_BASES[self.kind])
        assert entry.distribution and entry.version, "the providing distribution should be known"

    def test_options_have_defaults_and_reject_unknown_keys(self, plugin_name: str, plugin_registry: PluginRegistry) -> None:
        cls = plugin_registry.get(self.kind, plugin_name)
        cls.Options()  # every option has a default
        assert cls.Options.model_config.get("extra") == "forbid"
        with pytest.raises(pydantic.ValidationError):
            cls.Options.model_validate({"definitely_not_an_option": 1})
        with pytest.raises(ConfigError, match="definitely_not_an_option"):
            plugin_registry.create(self.kind, plugin_name, {"definitely_not_an_option": 1})
