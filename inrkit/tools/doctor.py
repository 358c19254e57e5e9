"""``inrkit doctor``: one report of the environment, for bug reports and for "why is it slow here".

:func:`gather` collects inrkit's and Python's versions, the platform, torch with its CUDA and
cuDNN versions, the devices and their memory, threads, TF32 and bf16 support, the installed
plugins (and those that failed to load), whether the runs folder is writable and how much disk
is free there, whether ``torch.compile`` works, and the environment variables that change
inrkit's behaviour. :func:`format_report` renders it as text; the JSON form is the same dict.

Every probe catches its own errors and reports them in its section's ``error`` (and in
``problems``), so a broken environment (no torch, a plugin that raises, a read-only disk) still
gets a complete report. Nothing here imports torch or the plugins at module level.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inrkit._version import __version__

if TYPE_CHECKING:
    from inrkit.plugins import PluginRegistry

#: Bumped when a key is renamed or removed (adding keys keeps the version).
FORMAT_VERSION = 1

#: Environment variables reported besides every ``INRKIT_*`` one (values only of these: no secrets).
ENVIRONMENT_VARIABLES = (
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "PYTORCH_CUDA_ALLOC_CONF",
    "TORCHINDUCTOR_CACHE_DIR",
    "CC",
    "CXX",
)

#: Seconds the ``torch.compile`` probe may take before it is reported as timed out.
COMPILE_TIMEOUT = 120.0

# The probe runs in its own interpreter, so a hang can be cut off and a crash cannot take the
# report with it. It compiles a small elementwise function (what inrkit's compiled step fuses)
# on the default device and checks the result against eager PyTorch.
_COMPILE_PROBE = """
import json, time
import torch
device = "cuda" if torch.cuda.is_available() else "cpu"
start = time.perf_counter()
fn = torch.compile(lambda x: torch.sin(30.0 * x) * x + 1.0)
x = torch.linspace(-1.0, 1.0, 256, device=device)
torch.testing.assert_close(fn(x), torch.sin(30.0 * x) * x + 1.0)
print(json.dumps({"device": device, "seconds": time.perf_counter() - start}))
"""


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _probe(section: dict[str, Any], fill: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run one probe into ``section`` (its keys preset to ``None``); an exception becomes ``error``."""
    section.setdefault("error", None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fill(section)
    except Exception as exc:  # noqa: BLE001 - a probe must never take the report down with it
        section["error"] = _error(exc)
    return section


def _inrkit(section: dict[str, Any]) -> None:
    section["location"] = str(Path(__file__).resolve().parent)  # this module lies in the package
    try:
        dist = importlib.metadata.distribution("inrkit")
    except importlib.metadata.PackageNotFoundError:
        section["install"] = "not installed (source tree on sys.path)"
        return
    direct = dist.read_text("direct_url.json")
    info = json.loads(direct) if direct else {}
    if info.get("dir_info", {}).get("editable"):
        section["install"] = "editable"
    elif str(info.get("url", "")).endswith(".whl"):
        section["install"] = "wheel file"
    elif info.get("url"):
        section["install"] = "from " + str(info["url"]).split("://", 1)[0]
    else:
        section["install"] = "from an index"


def _python(section: dict[str, Any]) -> None:
    section.update(
        version=platform.python_version(),
        implementation=platform.python_implementation(),
        executable=sys.executable,
    )


def _cpu_name() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _platform(section: dict[str, Any]) -> None:
    section.update(
        system=platform.system(),
        release=platform.release(),
        machine=platform.machine(),
        platform=platform.platform(),
        cpu_count=os.cpu_count(),
        cpu_name=_cpu_name(),
    )


def _torch(section: dict[str, Any]) -> None:
    import torch

    from inrkit.devices import resolve_device

    section.update(
        version=torch.__version__,
        cuda=torch.version.cuda,
        hip=getattr(torch.version, "hip", None),
        cudnn=None,
        threads=torch.get_num_threads(),
        interop_threads=torch.get_num_interop_threads(),
        cpu_capability=None,
        default_device=str(resolve_device("auto")),
    )
    with contextlib.suppress(Exception):
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        section["cudnn"] = None if cudnn is None else str(cudnn)
    with contextlib.suppress(Exception):
        section["cpu_capability"] = torch.backends.cpu.get_cpu_capability()


def _memory() -> tuple[int | None, int | None]:
    """Total and available bytes of the machine's memory."""
    total = available = None
    with contextlib.suppress(OSError, ValueError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    return total, available


def _devices(section: dict[str, Any]) -> None:
    total, available = _memory()
    section["items"] = [
        {"name": "cpu", "type": "cpu", "model": _cpu_name(), "memory_total_bytes": total,
         "memory_free_bytes": available, "capability": None, "bf16": None, "tf32": None, "error": None}
    ]
    import torch

    section["cuda_available"] = torch.cuda.is_available()
    section["cuda_device_count"] = torch.cuda.device_count() if section["cuda_available"] else 0
    for index in range(section["cuda_device_count"]):
        entry: dict[str, Any] = {
            "name": f"cuda:{index}", "type": "cuda", "model": None, "memory_total_bytes": None,
            "memory_free_bytes": None, "capability": None, "bf16": None, "tf32": None, "error": None,
        }

        def fill(entry: dict[str, Any], index: int = index) -> None:
            props = torch.cuda.get_device_properties(index)
            major, minor = torch.cuda.get_device_capability(index)
            entry.update(model=props.name, memory_total_bytes=int(props.total_memory), capability=f"{major}.{minor}")
            entry["tf32"] = major >= 8  # TF32 tensor cores arrived with Ampere (compute capability 8.0)
            with torch.cuda.device(index):
                entry["bf16"] = bool(torch.cuda.is_bf16_supported())
            free, _ = torch.cuda.mem_get_info(index)
            entry["memory_free_bytes"] = int(free)

        section["items"].append(_probe(entry, fill))


def _precision(section: dict[str, Any], devices: dict[str, Any]) -> None:
    import torch

    gpus = [d for d in devices.get("items") or [] if d["type"] == "cuda"]
    section["tf32_supported"] = any(d["tf32"] for d in gpus) if gpus else False
    section["bf16_cuda"] = all(d["bf16"] for d in gpus) if gpus else None
    matmul = torch.backends.cuda.matmul
    # Newer PyTorch has ``fp32_precision`` ("tf32"/"ieee"/"none") and refuses to mix it with the
    # legacy ``allow_tf32`` flag, so read whichever this version uses.
    if hasattr(matmul, "fp32_precision"):
        section["tf32_matmul"] = str(matmul.fp32_precision)
    else:
        section["tf32_matmul"] = "tf32" if matmul.allow_tf32 else "ieee"
    cudnn = torch.backends.cudnn
    if hasattr(cudnn, "fp32_precision"):
        section["tf32_cudnn"] = str(cudnn.fp32_precision)
    else:
        section["tf32_cudnn"] = "tf32" if cudnn.allow_tf32 else "ieee"
    # Whether bf16 autocast works on the CPU at all here (it is for GPUs in inrkit, but a
    # missing or broken CPU kernel shows up here first).
    a = torch.ones(8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        section["bf16_cpu_autocast"] = (a @ a).dtype == torch.bfloat16


def _plugins(section: dict[str, Any], registry: PluginRegistry | None) -> None:
    from inrkit.interfaces import PLUGIN_BASES
    from inrkit.plugins import get_registry

    registry = registry if registry is not None else get_registry()
    section["by_kind"] = {kind: registry.names(kind) for kind in PLUGIN_BASES}
    section["entries"] = [
        {"kind": e.kind, "name": e.name, "distribution": e.distribution, "version": e.version, "plugin": e.plugin}
        for e in registry.entries()
    ]
    section["failures"] = [
        {"plugin": f.plugin, "distribution": f.distribution, "version": f.version, "error": f.error, "message": f.describe()}
        for f in registry.failures
    ]
    section["conflicts"] = registry.conflicts()


def _runs(section: dict[str, Any]) -> None:
    path = Path(section["path"])
    section["exists"] = path.exists()
    if section["exists"] and not path.is_dir():
        section["writable"] = False
        section["error"] = f"{path} exists and is not a folder"
    # The folder a run would write into, or the nearest existing folder above it (where inrkit
    # would create it): a temporary file there is the only test that holds on every filesystem.
    checked = path
    while not checked.exists():
        checked = checked.parent
    section["checked"] = str(checked)
    free = shutil.disk_usage(checked).free
    section["free_bytes"] = int(free)
    if section["error"] is not None:
        return
    if not checked.is_dir():
        section["writable"] = False
        section["error"] = f"{checked} is not a folder, so {path} cannot be created"
        return
    try:
        with tempfile.NamedTemporaryFile(dir=checked, prefix=".inrkit-doctor-"):
            pass
        section["writable"] = True
    except OSError as exc:
        section["writable"] = False
        section["error"] = f"cannot write in {checked}: {exc.strerror or exc}"


def _compile(section: dict[str, Any], timeout: float) -> None:
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _COMPILE_PROBE], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        section["works"] = False
        section["seconds"] = round(time.perf_counter() - start, 2)
        section["error"] = f"timed out after {timeout:g} s"
        return
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line.split(":", 1)[0]]
        section["works"] = False
        section["error"] = (errors or lines or [f"exit status {done.returncode}"])[-1].strip()
        return
    result = json.loads(done.stdout.strip().splitlines()[-1])
    section.update(works=True, device=result["device"], seconds=round(float(result["seconds"]), 2))


def _environment() -> dict[str, str]:
    names = sorted(n for n in os.environ if n.startswith("INRKIT_")) + [n for n in ENVIRONMENT_VARIABLES if n in os.environ]
    return {name: os.environ[name] for name in names}


def _problems(report: dict[str, Any]) -> list[str]:
    problems = []
    for key, value in report.items():
        if isinstance(value, dict) and value.get("error"):
            if key == "runs":
                continue  # said below, with the path
            problems.append(f"{key}: {value['error']}")
    for device in report["devices"].get("items") or []:
        if device.get("error"):
            problems.append(f"device {device['name']}: {device['error']}")
    plugins = report["plugins"]
    problems += [f"plugins: {f['message']}" for f in plugins.get("failures") or []]
    problems += [f"plugins: {c}" for c in plugins.get("conflicts") or []]
    runs = report["runs"]
    if runs.get("writable") is False or runs.get("error"):
        problems.append(f"runs: {runs['path']} is not writable ({runs.get('error') or 'no permission'})")
    compiled = report["compile"]
    if compiled["checked"] and compiled["works"] is False and not compiled.get("error"):
        problems.append("compile: torch.compile failed")
    return problems


def gather(
    runs: str | Path = "runs",
    compile_probe: bool = True,
    compile_timeout: float = COMPILE_TIMEOUT,
    registry: PluginRegistry | None = None,
) -> dict[str, Any]:
    """The environment report as plain JSON-ready data (see ``inrkit doctor --json``).

    ``runs`` is the folder run folders go to (``runs/`` of the current directory by default);
    ``compile_probe=False`` skips the ``torch.compile`` probe (seconds to tens of seconds);
    ``registry`` replaces the installed plugins' registry (tests).
    """
    report: dict[str, Any] = {"format_version": FORMAT_VERSION}
    report["inrkit"] = _probe({"version": __version__, "location": None, "install": None}, _inrkit)
    report["python"] = _probe({"version": None, "implementation": None, "executable": None}, _python)
    report["platform"] = _probe(
        {"system": None, "release": None, "machine": None, "platform": None, "cpu_count": None, "cpu_name": None},
        _platform,
    )
    report["torch"] = _probe(
        {"version": None, "cuda": None, "hip": None, "cudnn": None, "threads": None, "interop_threads": None,
         "cpu_capability": None, "default_device": None},
        _torch,
    )
    report["devices"] = _probe({"cuda_available": None, "cuda_device_count": None, "items": []}, _devices)
    report["precision"] = _probe(
        {"tf32_supported": None, "tf32_matmul": None, "tf32_cudnn": None, "bf16_cuda": None, "bf16_cpu_autocast": None},
        lambda s: _precision(s, report["devices"]),
    )
    report["plugins"] = _probe(
        {"by_kind": {}, "entries": [], "failures": [], "conflicts": []}, lambda s: _plugins(s, registry)
    )
    runs_path = Path(runs).expanduser()
    report["runs"] = _probe(
        {"path": str(runs_path.absolute()), "exists": None, "writable": None, "checked": None, "free_bytes": None},
        _runs,
    )
    report["compile"] = {
        "checked": compile_probe, "works": None, "device": None, "seconds": None,
        "timeout_seconds": compile_timeout, "error": None,
    }
    if compile_probe:
        _probe(report["compile"], lambda s: _compile(s, compile_timeout))
    report["environment"] = _environment()
    report["problems"] = _problems(report)
    return report


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else "yes" if value else "no"


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned text (what ``inrkit doctor`` prints)."""
    lines: list[str] = []

    def add(label: str, text: str) -> None:
        lines.append(f"{label:<10}{text}")

    def failed(section: dict[str, Any]) -> str:
        return f"  (error: {section['error']})" if section.get("error") else ""

    r = report["inrkit"]
    add("inrkit", f"{r['version']}  {r['install'] or ''}  {r['location'] or ''}".rstrip() + failed(r))
    r = report["python"]
    add("python", f"{r['version']} ({r['implementation']})  {r['executable']}" + failed(r))
    r = report["platform"]
    add("platform", f"{r['platform']}, {r['cpu_count']} CPUs" + failed(r))
    r = report["torch"]
    if r["version"] is None:
        add("torch", "not importable" + failed(r))
    else:
        add(
            "torch",
            f"{r['version']}  CUDA {r['cuda'] or 'none'}  cuDNN {r['cudnn'] or 'none'}  "
            f"threads {r['threads']} (interop {r['interop_threads']})  CPU {r['cpu_capability'] or '?'}  "
            f"default device {r['default_device']}" + failed(r),
        )
    r = report["devices"]
    add("devices", failed(r).strip() if r.get("error") and not r["items"] else "")
    for d in r["items"]:
        memory = f"memory {_size(d['memory_total_bytes'])} total, {_size(d['memory_free_bytes'])} free"
        extra = f"  compute {d['capability']}  bf16 {_yes(d['bf16'])}  tf32 {_yes(d['tf32'])}" if d["type"] == "cuda" else ""
        lines.append(f"  {d['name']:<8}{d['model'] or '?'}  {memory}{extra}" + failed(d))
    if r.get("error") and r["items"]:
        lines.append(f"  cuda    {r['error']}")
    r = report["precision"]
    add(
        "precision",
        f"TF32 on a GPU here {_yes(r['tf32_supported'])} (torch settings: matmul {r['tf32_matmul']}, cuDNN {r['tf32_cudnn']})  "
        f"bf16 CUDA {_yes(r['bf16_cuda'])}, CPU autocast {_yes(r['bf16_cpu_autocast'])}" + failed(r),
    )
    r = report["plugins"]
    add("plugins", failed(r).strip())
    for kind, names in r["by_kind"].items():
        lines.append(f"  {kind:<11}{', '.join(names) or '(none)'}")
    for f in r["failures"]:
        lines.append(f"  failed     {f['message']}")
    for c in r["conflicts"]:
        lines.append(f"  conflict   {c}")
    r = report["runs"]
    state = "writable" if r["writable"] else "NOT writable" if r["writable"] is False else "unknown"
    where = "" if r["exists"] or r["checked"] is None else f" (will be created in {r['checked']})"
    add("runs", f"{r['path']}: {state}{where}, {_size(r['free_bytes'])} free on its disk" + failed(r))
    r = report["compile"]
    if not r["checked"]:
        add("compile", "not checked (--no-compile-probe)")
    elif r["works"]:
        add("compile", f"torch.compile works ({r['device']}, {r['seconds']} s)")
    else:
        add("compile", f"torch.compile does not work here: {r['error']}")
    env = report["environment"]
    add("env", "  ".join(f"{k}={v}" for k, v in env.items()) or "(no INRKIT_* or CUDA_VISIBLE_DEVICES set)")
    problems = report["problems"]
    add("problems", "none" if not problems else f"{len(problems)}")
    lines += [f"  - {p}" for p in problems]
    return "\n".join(line.rstrip() for line in lines)


def version_line() -> str:
    """``inrkit 0.1.0 (torch 2.13.0+cpu, cpu)``: what ``inrkit --version`` prints."""
    # The version must print even when torch is broken: that is when it is asked for.
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything (OSError, ImportError, ...)
        return f"inrkit {__version__} (torch not importable: {_error(exc)})"
    try:
        from inrkit.devices import resolve_device

        device = resolve_device("auto")
        where = str(device)
        if device.type == "cuda":
            where += f": {torch.cuda.get_device_name(0)}"
            if torch.cuda.device_count() > 1:
                where += f" (+{torch.cuda.device_count() - 1} more)"
    except Exception as exc:  # noqa: BLE001 - as above, for a broken CUDA runtime
        where = f"device unknown: {_error(exc)}"
    return f"inrkit {__version__} (torch {getattr(torch, '__version__', '?')}, {where})"
