"""The plugin registry: discovery through entry points, isolation of broken plugins, duplicates."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import builtin_entry_points, entry_point

from inrkit.errors import PluginError
from inrkit.interfaces import Activation
from inrkit.plugins import PluginRegistry, get_registry

EXTRA_ACTIVATION = """
import torch
import inrkit
from inrkit.interfaces import Activation

class Sine2(Activation):
    name = "{name}"
    def activate(self, z, position):
        return torch.sin(z)
    def init_(self, weight, bias, position):
        torch.nn.init.uniform_(weight, -0.1, 0.1)
        torch.nn.init.zeros_(bias)

@inrkit.hookimpl
def inrkit_register_activations():
    return [Sine2]
"""


def test_builtins_are_registered_through_entry_points():
    names = {ep.name: ep.value for ep in builtin_entry_points()}
    assert names["siren"] == "inrkit_activations.siren"
    registry = get_registry()
    assert {"siren"} <= set(registry.names("activation"))
    assert {"separate", "minr"} <= set(registry.names("sharing"))
    assert {"image"} <= set(registry.names("signal"))
    for entry in registry.entries():
        if entry.plugin in names:
            assert entry.distribution == "inrkit"


def test_fresh_registry_per_test_is_isolated(fresh_registry, plugin_module):
    mod = plugin_module("extra_act", EXTRA_ACTIVATION.format(name="sine2"))
    with_extra = fresh_registry(entry_point("extra", mod))
    assert "sine2" in with_extra.names("activation")
    assert "sine2" not in fresh_registry().names("activation")
    assert "sine2" not in get_registry().names("activation")


def test_broken_entry_point_is_reported_and_skipped(fresh_registry, plugin_module):
    mod = plugin_module("broken_plugin", "import does_not_exist_anywhere\n")
    with pytest.warns(RuntimeWarning, match="broken"):
        registry = fresh_registry(entry_point("broken", mod))
    assert [f.plugin for f in registry.failures] == ["broken"]
    failure = registry.failures[0]
    assert "ModuleNotFoundError" in failure.error and "does_not_exist_anywhere" in failure.error
    assert failure.version  # plugin, version and error are all reported
    assert "siren" in registry.names("activation")  # everything else keeps working
    with pytest.raises(PluginError, match="failed to load: broken"):
        registry.get("activation", "nope")


def test_strict_mode_reraises(fresh_registry, plugin_module, monkeypatch):
    mod = plugin_module("broken_plugin2", "raise RuntimeError('boom at import')\n")
    monkeypatch.setenv("INRKIT_STRICT_PLUGINS", "1")
    with pytest.raises(RuntimeError, match="boom at import"):
        fresh_registry(entry_point("broken2", mod))


def test_misspelled_hook_fails_loudly_but_only_that_plugin(fresh_registry, plugin_module):
    mod = plugin_module(
        "typo_plugin",
        """
        import inrkit
        @inrkit.hookimpl
        def inrkit_register_activation():   # missing 's'
            return []
        """,
    )
    with pytest.warns(RuntimeWarning, match="typo"):
        registry = fresh_registry(entry_point("typo", mod))
    assert "inrkit_register_activation" in registry.failures[0].error
    assert "siren" in registry.names("activation")


def test_duplicate_name_is_rejected_naming_both_sources(fresh_registry, plugin_module):
    mod = plugin_module("dup_plugin", EXTRA_ACTIVATION.format(name="siren"))
    with pytest.warns(RuntimeWarning, match="duplicate activation name 'siren'"):
        registry = fresh_registry(entry_point("dupe", mod))
    with pytest.raises(PluginError) as info:
        registry.get("activation", "siren")
    message = str(info.value)
    assert "plugin 'siren' from inrkit" in message and "plugin 'dupe'" in message
    assert registry.conflicts() and "separate" in registry.names("sharing")


def test_unknown_name_lists_valid_names(fresh_registry):
    with pytest.raises(PluginError) as info:
        fresh_registry().get("activation", "sirne")
    assert "unknown activation 'sirne'" in str(info.value)
    assert "siren" in str(info.value)


def test_register_hook_returning_a_non_plugin_is_skipped(fresh_registry, plugin_module):
    mod = plugin_module(
        "bad_class",
        """
        import inrkit
        @inrkit.hookimpl
        def inrkit_register_activations():
            return [dict]
        """,
    )
    with pytest.warns(RuntimeWarning, match="not a subclass of Activation"):
        registry = fresh_registry(entry_point("badclass", mod))
    assert registry.failures[0].plugin == "badclass"


def test_class_without_name_or_abstract_methods_is_skipped(fresh_registry, plugin_module):
    mod = plugin_module(
        "incomplete",
        """
        import inrkit
        from inrkit.interfaces import Activation
        class Half(Activation):
            name = "half"
        @inrkit.hookimpl
        def inrkit_register_activations():
            return [Half]
        """,
    )
    with pytest.warns(RuntimeWarning, match="does not implement"):
        registry = fresh_registry(entry_point("incomplete", mod))
    assert "half" not in registry.names("activation")


def test_disable_and_allow_list_switches(fresh_registry, monkeypatch):
    monkeypatch.setenv("INRKIT_DISABLE_PLUGINS", "separate")
    assert "separate" not in fresh_registry().names("sharing")
    monkeypatch.delenv("INRKIT_DISABLE_PLUGINS")
    monkeypatch.setenv("INRKIT_LOAD_PLUGINS", "siren,image")
    registry = fresh_registry()
    assert registry.names("activation") == ["siren"] and registry.names("sharing") == []


def test_direct_registration_and_unregistration(plugin_module):
    import importlib

    mod = importlib.import_module(plugin_module("direct", EXTRA_ACTIVATION.format(name="direct")))
    registry = PluginRegistry(entry_points=[]).load()
    registry.register(mod, name="direct")
    try:
        cls = registry.get("activation", "direct")
        assert issubclass(cls, Activation)
    finally:
        registry.unregister("direct")
    assert "direct" not in registry.names("activation")


def test_registry_loads_lazily_and_once():
    registry = PluginRegistry(entry_points=builtin_entry_points())
    assert registry.pm.get_plugins() == set()
    registry.names("activation")
    plugins = registry.pm.get_plugins()
    registry.names("sharing")
    assert registry.pm.get_plugins() == plugins


@pytest.mark.slow
def test_cli_import_loads_no_plugin_and_help_needs_none(tmp_path):
    code = (
        "import sys, inrkit.cli; "
        "print(any(m.startswith('inrkit_') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    help_out = subprocess.run(
        [sys.executable, "-m", "inrkit.cli", "--help"],
        capture_output=True,
        text=True,
        env={"PATH": "", "INRKIT_LOAD_PLUGINS": "", "PYTHONPATH": str(tmp_path)},
    )
    assert help_out.returncode == 0 and "run" in help_out.stdout


THIRD_PARTY_KINDS = """
import numpy as np
import inrkit
from inrkit.interfaces import Item, Signal, SharingStrategy
from inrkit.nn import MultiINR, mlp_layer_defs


class Ramp(Signal):
    name = "ramp"

    def load(self, sources):
        y, x = np.mgrid[0:12, 0:16] / 16.0
        return [Item(f"ramp{k}", np.stack([x, y, (x + y) / 2 * k / 3], -1).astype(np.float32)) for k in range(3)]

    def save(self, item, reconstruction, folder):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{item.name}.npy"
        np.save(path, reconstruction)
        return [path]


class SharedFirst(SharingStrategy):
    name = "shared-first"

    def build(self, activation, spec):
        defs = mlp_layer_defs(spec, activation, [True] * (spec.layers - 2))
        defs[0] = type(defs[0])(defs[0].name, defs[0].in_features, defs[0].out_features, "first", shared=True)
        return MultiINR(activation, spec, defs)


@inrkit.hookimpl
def inrkit_register_signals():
    return [Ramp]


@inrkit.hookimpl
def inrkit_register_sharing_strategies():
    return [SharedFirst]
"""


def test_third_party_signal_and_sharing_strategy_through_hooks(fresh_registry, plugin_module, tmp_path):
    import inrkit

    registry = fresh_registry(entry_point("thirdparty", plugin_module("third_party_kinds", THIRD_PARTY_KINDS)))
    assert registry.entry("signal", "ramp").plugin == "thirdparty"
    assert "shared-first" in registry.names("sharing")
    config = {"signal": {"name": "ramp"}, "sharing": {"name": "shared-first"}, "model": {"width": 16, "layers": 3}, "train": {"steps": 5}}
    result = inrkit.fit(config, out=tmp_path / "run", registry=registry)
    assert result.metrics["signal"] == "ramp" and len(result.metrics["items"]) == 3
    assert "first" in result.model.shared and "last" in result.model.items
    assert sorted(p.name for p in (tmp_path / "run" / "recon").iterdir()) == ["ramp0.npy", "ramp1.npy", "ramp2.npy"]
    np = __import__("numpy")
    run = inrkit.load(tmp_path / "run", registry=registry)
    np.testing.assert_allclose(run.decode("ramp2"), result.reconstructions[2], atol=1e-5)
