"""The package's layering: each module imports only from layers below it, and nothing is circular.

Every import counts: module level, inside functions, and under ``TYPE_CHECKING``. The core never
imports a plugin package (built-ins are found through entry points like anyone's). A new module
must be given a layer here, which is the moment to decide where it belongs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "inrkit"
PLUGIN_PACKAGES = {p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").is_file()}

#: Lowest first. A module may import from its own layer (without cycles) and from lower ones.
LAYERS: list[set[str]] = [
    {"inrkit._version", "inrkit.errors", "inrkit.inits", "inrkit.coords", "inrkit.metrics", "inrkit.plugins.hookspecs",
     "inrkit.limits", "inrkit.names",  # limits, names; the subpackages' docstrings
     "inrkit.training", "inrkit.codec", "inrkit.runs", "inrkit.experiments", "inrkit.tools"},
    {"inrkit.files", "inrkit.images", "inrkit.devices", "inrkit.results", "inrkit.experiments.stats", "inrkit.codec.quantize", "inrkit.codec.entropy",
     "inrkit.experiments.baselines"},
    {"inrkit.interfaces"},  # the plugin interfaces and the INRModel protocol
    {"inrkit.plugins.manager", "inrkit.plugins", "inrkit.sources"},
    {"inrkit.config"},
    {"inrkit.nn"},  # modules: a forward pass and a parameter layout
    {"inrkit.training.points", "inrkit.runs.checkpoint", "inrkit.runs.layout", "inrkit.codec.inrz"},  # targets and chunks; files; the compressed container
    {"inrkit.training.perf", "inrkit.training.distributed", "inrkit.training.batches", "inrkit.training.optim"},  # speed; processes; item mini-batches
    {"inrkit.training.trainer"},  # the loop, optimiser, callbacks
    {"inrkit.factory", "inrkit.training.evaluate", "inrkit.codec.qat"},
    {"inrkit.runs.plots"},
    {"inrkit.runs.folder"},
    {"inrkit.runs.fit", "inrkit.tools.analysis", "inrkit.tools.bench", "inrkit.tools.diagnostics", "inrkit.tools.doctor", "inrkit.runs.compress"},
    {"inrkit.api"},  # the facade
    {"inrkit.experiments.runner"},  # many fits of one base config, resumable
    {"inrkit.experiments.compare", "inrkit.experiments.rd"},
    {"inrkit.experiments.sweep", "inrkit.experiments.front"},
    {"inrkit.cli", "inrkit.cli.app", "inrkit.testing", "inrkit.testing._common", "inrkit.testing.activation",
     "inrkit.testing.sharing", "inrkit.testing.signal"},
    {"inrkit.__main__", "inrkit.cli.__main__", "inrkit"},
]
LAYER_OF = {module: index for index, layer in enumerate(LAYERS) for module in layer}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Every module an inrkit file imports (``from a import b`` counts ``a.b`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


GRAPH = {name: {m for m in _imports(path) if m in MODULES} for name, path in MODULES.items()}


def test_every_module_has_a_layer():
    missing = sorted(set(MODULES) - set(LAYER_OF))
    assert not missing, f"give these modules a layer in tests/test_layering.py: {missing}"
    assert not sorted(set(LAYER_OF) - set(MODULES)), "LAYERS names modules that no longer exist"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module: str):
    upward = sorted(m for m in GRAPH[module] if LAYER_OF.get(m, -1) > LAYER_OF.get(module, -1))
    assert not upward, f"{module} (layer {LAYER_OF.get(module)}) imports from higher layers: {upward}"


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_core_never_imports_a_plugin_package(module: str):
    plugins = sorted(m for m in _imports(MODULES[module]) if m.split(".")[0] in PLUGIN_PACKAGES)
    assert not plugins, f"{module} imports plugin code {plugins}: built-ins must come through entry points"


def test_the_model_knows_nothing_of_the_trainer():
    below_train = {"inrkit.nn", "inrkit.interfaces", "inrkit.training.points"}
    for module in below_train:
        assert not GRAPH[module] & {"inrkit.training.trainer", "inrkit.api", "inrkit.runs.fit", "inrkit.runs.folder"}, module


def test_the_layering_test_sees_real_imports():
    """Guard against a scanner that finds nothing (the other tests would pass vacuously)."""
    assert "inrkit.training.points" in GRAPH["inrkit.training.trainer"]
    assert "inrkit.interfaces" in GRAPH["inrkit.nn"]
    assert "inrkit.runs.plots" in GRAPH["inrkit.runs.folder"]  # imported inside a function
    assert "inrkit.runs.fit" in GRAPH["inrkit.cli.app"]  # imported under TYPE_CHECKING
