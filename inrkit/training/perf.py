"""Speed settings of a training run: TF32 matrix products, bf16 autocast, ``torch.compile``.

Each is a switch in :class:`~inrkit.config.TrainConfig`; they live here so the trainer and
``inrkit bench`` apply them the same way.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator

import torch

from inrkit.errors import TrainingError
from inrkit.interfaces import INRModel

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def tf32_enabled() -> bool:
    """Whether float32 CUDA matrix products may use TF32, read without raising.

    PyTorch 2.9+ keeps a legacy flag (``allow_tf32``) and a newer setting (``fp32_precision``);
    reading the legacy flag after only the newer one was set raises ("mix of the legacy and new
    APIs"), so that case is read from the newer setting.
    """
    matmul = torch.backends.cuda.matmul
    try:
        return bool(matmul.allow_tf32)
    except RuntimeError:
        return getattr(matmul, "fp32_precision", "ieee") == "tf32"


@contextlib.contextmanager
def matmul_precision(device: torch.device, tf32: bool) -> Iterator[None]:
    """On CUDA, let float32 matrix products use TF32 tensor cores while the block runs.

    Set through the legacy ``allow_tf32`` setter, which keeps the legacy flag, the newer
    ``fp32_precision`` and ``torch.get_float32_matmul_precision()`` in step, so any of them can be
    read during the fit (a plugin, inductor's autotuning). The setting is process-wide in
    PyTorch, so the previous one is restored afterwards. CPU products are left alone.
    """
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    before = tf32_enabled()
    matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        matmul.allow_tf32 = before


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype the forward pass is autocast to (``None``: plain float32)."""
    return AUTOCAST_DTYPES[precision]


def inductor_cache_dir() -> str:
    """Where compiled kernels are kept between fits: ``TORCHINDUCTOR_CACHE_DIR`` if set, else
    ``$XDG_CACHE_HOME/inrkit/inductor`` (``~/.cache/inrkit/inductor``), so a second fit of the
    same shapes compiles from cache instead of from scratch (and survives a cleaned ``/tmp``)."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return os.environ["TORCHINDUCTOR_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "inrkit", "inductor")


def compile_forward(model: INRModel, dynamic: bool | None = None) -> Callable[..., torch.Tensor]:
    """``model``'s forward pass compiled for training: its elementwise work fuses into few kernels.

    Only the trainer's step calls the compiled forward; evaluation and decoding run the model
    eagerly, so they never wait for another compilation. Compilation happens at the first call
    (seconds to tens of seconds on a CPU); :func:`compile_errors` turns a failure there into one
    message. ``dynamic=False`` when every chunk has one shape (:meth:`~inrkit.training.points.PointSet.equal_chunks`):
    one static graph per fit; ``None`` lets dynamo mark changing sizes dynamic (item blocks).
    """
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", inductor_cache_dir())
    return torch.compile(model.forward, dynamic=dynamic)


# -- train.compile = "auto" -------------------------------------------------------------------------
#: Seconds a first compilation of the training step is expected to take, with inductor's cache
#: cold (warm, it is 3-6 s: benchmarks/RESULTS.md); the policy pays for a cold one.
EXPECTED_COMPILE_SECONDS = {"cpu": 30.0, "cuda": 40.0}
#: Eager step time over compiled, measured (benchmarks/RESULTS.md): on the H200, 37.3 ms against
#: 22.5 ms at 16 x 256^2 (1.66x, before the leaner eager step); on a 2-core CPU, with omega in the
#: products, compiled and eager steps are within noise (0.57-0.61 s against 0.57-0.59 s at 4 x 128^2).
COMPILED_SPEEDUP = {"cpu": 1.05, "cuda": 1.6}
#: Compile only when the time it is expected to save is this many times its expected cost.
PAYBACK = 2.0
#: Eager steps timed before "auto" decides (the quickest counts: the first warms caches up).
MEASURED_STEPS = 2


def inductor_missing(device: torch.device) -> str | None:
    """Why ``torch.compile``'s inductor backend cannot run on ``device`` here (``None``: it can):
    a CPU needs a C++ compiler, a CUDA card Triton."""
    if device.type == "cuda":
        return None if importlib.util.find_spec("triton") is not None else "Triton is not installed"
    if device.type != "cpu":
        return f"inductor does not target {device.type} here"
    compilers = [os.environ.get("CXX", ""), "c++", "g++", "clang++"]
    return None if any(c and shutil.which(c) for c in compilers) else "no C++ compiler on PATH"


def compile_plan(setting: bool | str, model: INRModel, device: torch.device, steps: int) -> tuple[str, str]:
    """What the fit does about ``torch.compile``: ``("compile", why)``, ``("eager", why)``, or
    ``("measure", why)`` for ``"auto"`` (time :data:`MEASURED_STEPS` eager steps, then
    :func:`compile_pays`). Complex-valued networks (WIRE) stay eager: inductor runs them eagerly."""
    if setting is False:
        return "eager", "train.compile=false"
    if steps <= 0:
        return "eager", "no steps to train"
    if any(p.is_complex() for p in model.parameters()):
        return "eager", "complex-valued layers, which torch.compile runs eagerly anyway"
    if setting is True:
        return "compile", "train.compile=true"
    missing = inductor_missing(device)
    if missing is not None:
        return "eager", f"auto: {missing}"
    if steps <= MEASURED_STEPS:
        return "eager", f"auto: {steps} step(s) cannot repay a compilation"
    return "measure", "auto: deciding after timing the first eager steps"


def compile_pays(step_seconds: float, remaining_steps: int, device: torch.device) -> tuple[bool, str]:
    """Whether compiling now repays itself: the eager time it saves over ``remaining_steps``
    (at :data:`COMPILED_SPEEDUP`) against :data:`PAYBACK` times :data:`EXPECTED_COMPILE_SECONDS`."""
    kind = "cuda" if device.type == "cuda" else "cpu"
    saving = remaining_steps * step_seconds * (1.0 - 1.0 / COMPILED_SPEEDUP[kind])
    cost = PAYBACK * EXPECTED_COMPILE_SECONDS[kind]
    verdict = "compiled" if saving >= cost else "eager"
    reason = (
        f"auto: {verdict}: {remaining_steps} steps of {step_seconds * 1e3:.3g} ms would save about {saving:.3g} s, "
        f"{'at least' if saving >= cost else 'less than'} {PAYBACK:g}x the {EXPECTED_COMPILE_SECONDS[kind]:g} s "
        "a compilation is expected to take"
    )
    return saving >= cost, reason


@contextlib.contextmanager
def compile_errors(enabled: bool) -> Iterator[None]:
    """Report a ``torch.compile`` failure (no C++ compiler, an unsupported op) as one error."""
    if not enabled:
        yield
        return
    try:
        yield
    except Exception as exc:
        module = type(exc).__module__ or ""
        if not module.startswith(("torch._dynamo", "torch._inductor")):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(
            f"torch.compile failed ({type(exc).__name__}: {first}); run without train.compile"
        ) from None
