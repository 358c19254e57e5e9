"""Speed settings of a training run: TF32 matrix products, bf16 autocast, ``torch.compile``.

Each is a switch in :class:`~inrkit.config.TrainConfig`; they live here so the trainer and
``inrkit bench`` apply them the same way.
"""

from __future__ import annotations

import contextlib
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


def compile_forward(model: INRModel) -> Callable[..., torch.Tensor]:
    """``model``'s forward pass compiled for training: its elementwise work fuses into few kernels.

    Only the trainer's step calls the compiled forward; evaluation and decoding run the model
    eagerly, so they never wait for another compilation. Compilation happens at the first call
    (seconds to tens of seconds on a CPU); :func:`compile_errors` turns a failure there into one
    message.
    """
    return torch.compile(model.forward)


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
