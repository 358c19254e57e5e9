"""The signal contract kit: checks every signal plugin must pass.

Subclass :class:`SignalContract` in your test suite, name your signal and, unless it has built-in
samples, give it data through the ``sources`` fixture::

    import pytest
    from inrkit.testing import SignalContract

    class TestAudio(SignalContract):
        signal = "audio"

        @pytest.fixture
        def sources(self, tmp_path):
            return [str(write_some_wav_files(tmp_path))]

The checks: the signal is registered under its name with validated options; ``load`` gives
items whose data are float32 arrays ``(*spatial, channels)`` with ``in_dim`` spatial axes and
values in [0, 1], with unique, non-empty names and one channel count; the training and
evaluation views follow the same layout; a path that does not exist is one
:class:`~inrkit.errors.DataError` naming it; ``save_all`` writes inside the folder it is given,
and loading what it wrote gives the same values back (within ``round_trip_atol``); its extra
metrics and reference views are well formed; and a short fit runs through the whole pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from inrkit.errors import DataError
from inrkit.interfaces import Item, Signal
from inrkit.plugins import PluginRegistry
from inrkit.testing._common import PluginContract


class SignalContract(PluginContract):
    """Checks every signal must pass. Set ``signal`` to the registered name."""

    kind: ClassVar[str] = "signal"
    #: The signal's registered name.
    signal: ClassVar[str]
    #: Options it is created with (``{}``: its defaults).
    options: ClassVar[dict[str, Any]] = {}
    #: Largest difference allowed between saved and reloaded values (8-bit files: 1/255).
    round_trip_atol: ClassVar[float] = 1.0 / 255.0 + 1e-6

    @pytest.fixture
    def sources(self, tmp_path: Path) -> list[str]:
        """Data to load; the default (no sources) asks for the signal's built-in samples."""
        return []

    @pytest.fixture
    def plugin_name(self) -> str:
        return self.signal

    @pytest.fixture
    def sig(self, plugin_registry: PluginRegistry) -> Signal:
        return plugin_registry.create("signal", self.signal, self.options)

    @pytest.fixture
    def items(self, sig: Signal, sources: list[str]) -> list[Item]:
        return sig.load(sources)

    def round_trip_sources(self, written: list[Path], folder: Path) -> list[str]:
        """What to load to read back the files ``save_all`` wrote (default: those files)."""
        return [str(p) for p in written]

    def test_declares_its_coordinate_dimensions(self, sig: Signal) -> None:
        assert isinstance(type(sig).in_dim, int) and type(sig).in_dim >= 1

    # -- loading ----------------------------------------------------------------------------------
    @staticmethod
    def _check_array(array: Any, sig: Signal, what: str) -> None:
        assert isinstance(array, np.ndarray), f"{what} is {type(array).__name__}, not a numpy array"
        assert array.dtype == np.float32, f"{what} has dtype {array.dtype}, not float32"
        assert array.ndim == sig.in_dim + 1, f"{what} has shape {array.shape}: expected {sig.in_dim} spatial axes and channels"
        assert array.size > 0 and array.shape[-1] >= 1, f"{what} is empty"
        assert np.isfinite(array).all(), f"{what} has non-finite values"
        assert array.min() >= 0.0 and array.max() <= 1.0, f"{what} has values outside [0, 1]"

    def test_items_are_float32_in_the_unit_range(self, sig: Signal, items: list[Item]) -> None:
        assert items, "load() returned no items"
        for item in items:
            assert isinstance(item, Item)
            self._check_array(item.data, sig, f"item {item.name!r}")
        assert len({item.channels for item in items}) == 1, "the items of one load differ in channels"

    def test_item_names_are_unique_and_not_empty(self, items: list[Item]) -> None:
        names = [item.name for item in items]
        assert all(isinstance(n, str) and n.strip() for n in names), f"empty names in {names}"
        assert len(set(names)) == len(names), f"repeated names in {names}"

    def test_views_follow_the_item_layout(self, sig: Signal, items: list[Item]) -> None:
        for item in items:
            train, evaluation = sig.train_view(item), sig.eval_view(item)
            self._check_array(train, sig, f"train_view({item.name!r})")
            self._check_array(evaluation, sig, f"eval_view({item.name!r})")
            assert train.shape[-1] == evaluation.shape[-1] == item.channels

    def test_a_missing_path_is_one_data_error_naming_it(self, sig: Signal, tmp_path: Path) -> None:
        missing = tmp_path / "no-such-input.dat"
        with pytest.raises(DataError) as info:
            sig.load([str(missing)])
        assert str(missing) in str(info.value) or missing.name in str(info.value)

    # -- writing ----------------------------------------------------------------------------------
    def test_save_round_trip(self, sig: Signal, items: list[Item], tmp_path: Path) -> None:
        folder = tmp_path / "recon"
        views = [sig.eval_view(item) for item in items]
        written = sig.save_all(items, views, folder)
        assert written, "save_all wrote nothing"
        for path in written:
            assert Path(path).is_file(), f"{path} was reported but not written"
            assert Path(path).resolve().is_relative_to(folder.resolve()), f"{path} is outside {folder}"
        reloaded = sig.load(self.round_trip_sources([Path(p) for p in written], folder))
        assert len(reloaded) == len(items), f"read back {len(reloaded)} items of {len(items)}"
        for item, back, view in zip(items, reloaded, views, strict=True):
            assert back.data.shape == view.shape, f"{item.name}: read back {back.data.shape}, wrote {view.shape}"
            error = float(np.abs(back.data - view).max())
            assert error <= self.round_trip_atol, f"{item.name}: values changed by {error:.4g} through save and load"

    def test_extra_metrics_and_reference_views_are_well_formed(self, sig: Signal, items: list[Item]) -> None:
        for item in items:
            for key, value in sig.extra_metrics(item).items():
                assert key not in ("name", "shape", "channels", "psnr", "ssim"), f"extra metric {key!r} shadows a built-in"
                assert value is None or isinstance(value, float), f"extra metric {key!r} is {type(value).__name__}"
            for label, view in sig.reference_views(item).items():
                assert view.shape == sig.eval_view(item).shape, f"reference view {label!r} has shape {view.shape}"

    def test_short_fit_runs_through_the_pipeline(self, sources: list[str], plugin_registry: PluginRegistry, tmp_path: Path) -> None:
        from inrkit import api

        config = {
            "signal": {"name": self.signal, **self.options},
            "model": {"width": 16, "layers": 3},
            "train": {"steps": 5, "device": "cpu"},
        }
        result = api.fit(config, data=sources, out=tmp_path / "run", registry=plugin_registry)
        assert result.metrics is not None and result.run_dir is not None
        assert len(result.metrics.items) == len(result.items)
        assert all(item.psnr is not None for item in result.metrics.items)
        assert (result.run_dir / "recon").is_dir()
