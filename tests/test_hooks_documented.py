"""Every hook is documented and tested (datasette's habit); plugin controls work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inrkit.plugins import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("inrkit_") and callable(getattr(hookspecs, name)))


def test_hook_list_is_what_the_registry_uses():
    assert HOOKS == sorted(hookspecs.REGISTER_HOOKS.values())


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook: str):
    assert f"`{hook}" in (ROOT / "docs" / "plugins.md").read_text(), f"{hook} is missing from docs/plugins.md"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_exercised_by_a_test(hook: str):
    me = Path(__file__).name
    tests = [p for p in (ROOT / "tests").rglob("test_*.py") if p.name != me]
    assert any(hook in p.read_text() for p in tests), f"no test implements {hook}"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "inrkit.cli", *args], capture_output=True, text=True, env={**os.environ, **env}
    )


@pytest.mark.slow
def test_plugins_all_lists_modules_and_their_hooks():
    proc = _cli("plugins", "--all", "--json")
    modules = {m["plugin"]: m for m in json.loads(proc.stdout)["modules"]}
    assert modules["minr"]["hooks"] == ["inrkit_register_sharing_strategies"]
    assert modules["concat"]["provides"] == ["sharing:column", "sharing:grid", "sharing:row"]
    assert "plugin modules" in _cli("plugins", "--all").stdout


@pytest.mark.slow
def test_trace_variable_prints_hook_calls():
    proc = _cli("params", INRKIT_TRACE_PLUGINS="1")
    assert proc.returncode == 0
    assert "loading entry point siren = inrkit_activations.siren" in proc.stderr
    assert "inrkit_register_activations() of siren -> ['siren']" in proc.stderr
    assert "[inrkit plugins]" not in _cli("params").stderr


def test_every_builtin_plugin_has_a_docs_page_in_the_nav():
    from conftest import builtin_entry_points

    nav = (ROOT / "mkdocs.yml").read_text()
    for ep in builtin_entry_points():
        page = ROOT / "docs" / "builtins" / f"{ep.name}.md"
        assert page.is_file(), f"no docs page for built-in plugin {ep.name}"
        assert f"builtins/{ep.name}.md" in nav, f"docs/builtins/{ep.name}.md is not in mkdocs.yml's nav"
        assert f"::: {ep.value}" in page.read_text()
