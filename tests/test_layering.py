"""The package's layering, by package: each unit imports only from its own layer and the layers below.

A unit is a top-level module of ``inrkit/`` (the vocabulary, the plugin-author helpers, the front
doors) or a whole subpackage (``training``, ``codec``, ``runs`` ...): a module inherits its
package's layer, so a new module needs no entry here, and a module's folder says what it may
import. Every import counts: module level, inside functions and under ``TYPE_CHECKING``.

The table in ``docs/architecture.md`` is this list; ``python tests/test_layering.py`` rewrites it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "inrkit"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
PLUGIN_PACKAGES = {p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").is_file()}
SUBPACKAGES = {f"inrkit.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}

#: Lowest first: (units, what they are for). Units of one layer may import each other (without
#: cycles); nothing imports from a higher layer.
LAYERS: list[tuple[tuple[str, ...], str]] = [
    (("_version", "errors", "coords", "inits", "metrics"),
     "the version, user errors, coordinate conventions, initialisation bounds, PSNR/SSIM: no inrkit imports"),
    (("limits", "names", "devices", "results"),
     "size limits and the machine's resources, safe file names, device choice, typed results"),
    (("files", "interfaces"), "atomic writes, JSON and SHA256SUMS; the four plugin interfaces and the model protocol"),
    (("images", "arrays", "sources", "plugins/"), "helpers signal plugins share; hook specs, discovery and the registry"),
    (("config", "nn"), "the run configuration as plain data; modules for many INRs at once and their state"),
    (("factory", "training/"), "names to a model (`create_model`); the trainer, points and chunks, processes, evaluation"),
    (("codec/",), "quantisation, entropy coding, the `.inrz` container, quantisation-aware training"),
    (("runs/",), "a config fitted into a run folder, the folder read back, checkpoints, compression, plots"),
    (("api", "tools/"), "the facade (`fit`, `encode`, `load`, `decode`); doctor, bench, diagnostics, analysis"),
    (("experiments/",), "many fits of one base config: compare, sweep, front, rd; statistics, codec baselines"),
    (("cli/",), "the command line: one module per command group"),
    (("testing/",), "the contract kits plugin authors run"),
    (("__main__", "inrkit"), "`python -m inrkit`; the package's lazy public names"),
]


def _unit_name(short: str) -> str:
    return "inrkit" if short == "inrkit" else "inrkit." + short.rstrip("/")


LAYER_OF = {_unit_name(u): index for index, (units, _) in enumerate(LAYERS) for u in units}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def unit_of(module: str) -> str:
    """A module's unit: its subpackage, or itself when it is a top-level module."""
    parts = module.split(".")
    if len(parts) == 1:
        return module
    sub = ".".join(parts[:2])
    return sub if sub in SUBPACKAGES else module


def _imports(path: Path, known: dict[str, Path] = MODULES) -> set[str]:
    """Every inrkit module a file imports (``from a import b`` counts ``a.b`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


GRAPH = {name: {m for m in _imports(path) if m in MODULES} for name, path in MODULES.items()}
UNIT_GRAPH: dict[str, set[str]] = {}
for _module, _targets in GRAPH.items():
    UNIT_GRAPH.setdefault(unit_of(_module), set()).update(unit_of(t) for t in _targets if unit_of(t) != unit_of(_module))


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_unit_has_a_layer():
    units = {unit_of(m) for m in MODULES}
    missing = sorted(units - set(LAYER_OF))
    assert not missing, f"give these modules or subpackages a layer in tests/test_layering.py: {missing}"
    assert not sorted(set(LAYER_OF) - units), "LAYERS names units that no longer exist"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module: str):
    mine = LAYER_OF[unit_of(module)]
    upward = sorted(m for m in GRAPH[module] if LAYER_OF[unit_of(m)] > mine)
    assert not upward, f"{module} ({unit_of(module)}, layer {mine}) imports from higher layers: {upward}"


def test_no_import_cycle_between_modules():
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_between_packages():
    cycle = _find_cycle(UNIT_GRAPH)
    assert cycle is None, "package-level import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_core_never_imports_a_plugin_package(module: str):
    plugins = sorted(m for m in _imports(MODULES[module]) if m.split(".")[0] in PLUGIN_PACKAGES)
    assert not plugins, f"{module} imports plugin code {plugins}: built-ins must come through entry points"


def test_the_model_knows_nothing_of_the_trainer():
    for module in ("inrkit.nn", "inrkit.interfaces", "inrkit.factory"):
        above = sorted(m for m in GRAPH[module] if unit_of(m) in {"inrkit.training", "inrkit.runs", "inrkit.api"})
        assert not above, f"{module} imports {above}"


def _private_uses(path: Path) -> list[str]:
    """``from inrkit.x import _y`` and ``x._y`` where ``x`` names an inrkit module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("inrkit"):
            for alias in node.names:
                if f"{node.module}.{alias.name}" in MODULES:
                    aliases.add(alias.asname or alias.name)
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("inrkit") and alias.asname:
                    aliases.add(alias.asname)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                found.append(f"{node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_reaches_into_another_modules_private_names(module: str):
    found = _private_uses(MODULES[module])
    assert not found, f"{module} uses private names of other modules: {found}; make them public or move the code"


def _public(module: str) -> bool:
    """The surface plugins and embedders may import: the package, its top-level modules, a
    subpackage's ``__init__`` (``inrkit.testing`` and ``inrkit.plugins`` among them)."""
    parts = module.split(".")
    if parts[0] != "inrkit" or any(p.startswith("_") for p in parts[1:]):
        return False
    return len(parts) == 1 or (len(parts) == 2 and (module in MODULES or module in SUBPACKAGES))


OUTSIDE = sorted(
    [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "examples").rglob("*.py"), *(ROOT / "docs" / "snippets").rglob("*.py")]
)


@pytest.mark.parametrize("path", OUTSIDE, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_and_examples_import_only_the_public_surface(path: Path):
    inner = sorted(m for m in _imports(path) if m.split(".")[0] == "inrkit" and not _public(m))
    assert not inner, f"{path.relative_to(ROOT)} imports {inner}: import from inrkit's top level or a subpackage's __init__"
    assert not _private_uses(path), f"{path.relative_to(ROOT)} uses private names: {_private_uses(path)}"


@pytest.mark.slow
def test_importing_the_cli_loads_neither_torch_nor_a_plugin():
    code = (
        "import sys, inrkit.cli; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('inrkit_') or m == 'inrkit.config'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def architecture_table() -> str:
    rows = ["| layer | modules and packages | job |", "| --- | --- | --- |"]
    for index, (units, job) in enumerate(LAYERS):
        shown = ", ".join(f"`{u}`" for u in units)
        rows.append(f"| {index} | {shown} | {job} |")
    return "\n".join(rows) + "\n"


START, END = "<!-- layers: tests/test_layering.py -->\n", "<!-- /layers -->\n"


def test_the_architecture_page_shows_these_layers():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert START in text and END in text, f"docs/architecture.md lost its {START.strip()} markers"
    shown = text.split(START, 1)[1].split(END, 1)[0]
    assert shown == architecture_table(), "docs/architecture.md's table differs: run python tests/test_layering.py"


def test_the_layering_test_sees_real_imports():
    """Guard against a scanner that finds nothing (the other tests would pass vacuously)."""
    assert "inrkit.training.points" in GRAPH["inrkit.training.trainer"]
    assert "inrkit.interfaces" in GRAPH["inrkit.nn"]
    assert "inrkit.runs.plots" in GRAPH["inrkit.runs.folder"]  # imported inside a function
    assert "inrkit.runs.fit" in GRAPH["inrkit.cli.output"]  # imported under TYPE_CHECKING
    assert UNIT_GRAPH["inrkit.runs"] >= {"inrkit.codec", "inrkit.training"}
    assert _private_uses(Path(__file__)) == []
    assert not _public("inrkit.training.trainer") and _public("inrkit.training") and _public("inrkit.images")


def test_no_monkeypatch_may_patch_nothing():
    """``monkeypatch.setattr(module, name, ..., raising=False)`` patches nothing when ``name`` has
    moved away (it did, once, in a module move): a test must patch the module that looks the
    name up, and fail loudly when it is gone."""
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if path != Path(__file__)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "setattr(" in line and "raising=False" in line
    ]
    assert not found, f"these patches may silently patch nothing: {found}"


if __name__ == "__main__":  # rewrite the table in docs/architecture.md
    text = ARCHITECTURE.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    ARCHITECTURE.write_text(head + START + architecture_table() + END + rest.split(END, 1)[1], encoding="utf-8")
    print(f"wrote the layers table of {ARCHITECTURE.relative_to(ROOT)}")
