"""Speed settings of a training run: TF32 matrix products, bf16 autocast, ``torch.compile``.

Each is a switch in :class:`~inrkit.config.TrainConfig`; they live here so the trainer and
``inrkit bench`` apply them the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from inrkit.errors import TrainingError

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16}


@contextlib.contextmanager
def matmul_precision(device: torch.device, tf32: bool) -> Iterator[None]:
    """On CUDA, let float32 matrix products use TF32 tensor cores while the block runs.

    The setting is process-wide in PyTorch, so the previous one is restored afterwards.
    CPU products are left alone (full float32).
    """
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        matmul.allow_tf32 = before


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype the forward pass is autocast to (``None``: plain float32)."""
    return AUTOCAST_DTYPES[precision]


def compile_model(model: torch.nn.Module) -> None:
    """Compile ``model``'s forward in place: its elementwise work fuses into few kernels.

    Compilation happens at the first call (tens of seconds on a CPU); :func:`compile_errors`
    turns a failure there into one message.
    """
    model.compile()


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
