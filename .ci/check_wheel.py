"""CI: the wheel works as users get it. ``.ci/run`` calls this with a clean venv's Python (holding
torch, the wheel and its dependencies, nothing editable) from an empty temporary folder:

    python /repo/.ci/check_wheel.py /repo dist/inrkit-*.whl

It checks that inrkit and the built-in plugins import from site-packages (never the source tree),
that the wheel holds every module of the source tree and its package data, the metadata a release
needs, and then runs ``inrkit --version``, ``plugins --json``, ``doctor --json``, a tiny ``run``
(with a callback) and ``decode`` through the installed ``inrkit`` command.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import json
import os
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

REPO = Path(sys.argv[1]).resolve()
WHEEL = Path(sys.argv[2]).resolve()
SITE = Path(sysconfig.get_paths()["purelib"]).resolve()
PLUGIN_PACKAGES = sorted(p.name for p in (REPO / "plugins").iterdir() if (p / "__init__.py").is_file())

#: Every built-in plugin, by kind; a new built-in belongs here too.
BUILTINS = {
    "activation": {"siren", "gauss", "wire", "finer", "pemlp"},
    "sharing": {"minr", "separate", "row", "column", "grid", "id", "coinpp"},
    "signal": {"image", "video", "superres"},
    "callback": {"progress", "jsonl", "tensorboard", "activations"},
}


def check(condition: object, message: str) -> None:
    if not condition:
        sys.exit(f"check_wheel: FAILED: {message}")


def inrkit(*args: str) -> str:
    start = time.perf_counter()
    done = subprocess.run(["inrkit", *args], capture_output=True, text=True, check=False)
    print(f"  $ inrkit {' '.join(args)}  ({time.perf_counter() - start:.1f} s)", flush=True)
    check(done.returncode == 0, f"inrkit {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def main() -> None:
    check(Path.cwd().resolve() != REPO and REPO not in Path.cwd().resolve().parents, "run me outside the source tree")
    check(not os.environ.get("PYTHONPATH"), "PYTHONPATH is set")

    # Imports come from the installed wheel, not from the checkout.
    for name in ["inrkit", "inrkit.cli", *PLUGIN_PACKAGES]:
        path = Path(importlib.import_module(name).__file__ or "").resolve()
        check(SITE in path.parents, f"{name} imported from {path}, not from {SITE}")
        check(REPO not in path.parents, f"{name} imported from the source tree ({path})")
    dist = importlib.metadata.distribution("inrkit")
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    check(not direct.get("dir_info", {}).get("editable"), "inrkit is installed editable")

    # The wheel holds every module of the source tree, and the package data.
    names = set(zipfile.ZipFile(WHEEL).namelist())
    sources = [p.relative_to(REPO).as_posix() for p in sorted((REPO / "inrkit").rglob("*.py"))]
    sources += [p.relative_to(REPO / "plugins").as_posix() for pkg in PLUGIN_PACKAGES for p in sorted((REPO / "plugins" / pkg).rglob("*.py"))]
    missing = [s for s in sources if s not in names]
    check(not missing, f"modules missing from the wheel: {missing}")
    check(importlib.resources.files("inrkit").joinpath("py.typed").is_file(), "inrkit/py.typed is not installed")
    check(any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "LICENSE is not in the wheel")

    # Metadata for a public release.
    meta = dist.metadata
    check(meta["Description-Content-Type"] == "text/markdown", "the README is not declared as markdown")
    check(meta["License-Expression"] == "MIT", "no SPDX license expression")
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [])
    check({"Homepage", "Documentation", "Source", "Issues"} <= set(urls), f"project URLs: {sorted(urls)}")
    classifiers = meta.get_all("Classifier") or []
    for prefix in ("Development Status ::", "Intended Audience :: Science/Research", "Operating System ::",
                   "Programming Language :: Python :: 3.", "Topic ::"):
        check(any(c.startswith(prefix) for c in classifiers), f"no classifier {prefix!r}")
    print(f"  {WHEEL.name}: {len(sources)} modules, py.typed, LICENSE, {len(classifiers)} classifiers, URLs {sorted(urls)}")

    # The installed command.
    print("  " + inrkit("--version").strip())
    listed = json.loads(inrkit("plugins", "--json"))
    check(not listed["failures"] and not listed["conflicts"], f"plugin failures {listed['failures']}, conflicts {listed['conflicts']}")
    found = {(p["kind"], p["name"]): p for p in listed["plugins"]}
    for kind, expected in BUILTINS.items():
        absent = sorted(expected - {name for k, name in found if k == kind})
        check(not absent, f"built-in {kind} plugins not found: {absent}")
    check(all(p["distribution"] == "inrkit" for (k, n), p in found.items() if n in BUILTINS.get(k, ())), "a built-in from another distribution")
    entry_points = [ep for ep in importlib.metadata.entry_points(group="inrkit") if ep.dist and ep.dist.name == "inrkit"]
    print(f"  plugins: {len(found)} from {len(entry_points)} entry points, all four kinds")

    report = json.loads(inrkit("doctor", "--json", "--runs", "runs"))
    check(report["inrkit"]["install"] == "wheel file", f"doctor sees install {report['inrkit']['install']!r}")
    check(SITE in Path(report["inrkit"]["location"]).parents, f"doctor sees inrkit at {report['inrkit']['location']}")
    check(report["plugins"]["failures"] == [] and report["runs"]["writable"] is True, f"doctor: {report['problems']}")
    check(report["torch"]["error"] is None, f"doctor: torch {report['torch']['error']}")
    compiled = report["compile"]
    print(f"  doctor: torch {report['torch']['version']}, torch.compile "
          f"{'works' if compiled['works'] else 'fails: ' + str(compiled['error'])}, problems {report['problems'] or 'none'}")

    # A tiny fit on the built-in samples, with a callback, and a decode of its result.
    metrics = json.loads(inrkit("run", "--steps", "2", "--width", "8", "--no-plots", "--no-progress",
                                "--log", "jsonl", "--out", "run", "--json"))
    check(len(metrics["items"]) == 4, "the built-in samples are not four items")
    for name in ("config.json", "metrics.json", "checkpoint.safetensors", "log.jsonl"):
        check(Path("run", name).is_file(), f"run/{name} was not written")
    check(len(list(Path("run", "recon").glob("*.png"))) == 4, "run/recon/ does not hold four images")
    inrkit("decode", "run", "--item", "0", "--scale", "2", "-o", "big.png")
    check(Path("big.png").is_file(), "decode wrote nothing")
    print("check_wheel: the wheel installs and runs on its own")


if __name__ == "__main__":
    main()
