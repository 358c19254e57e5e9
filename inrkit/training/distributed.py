"""Training one run's items on several processes with ``torch.distributed`` (launched by torchrun).

``torchrun --nproc_per_node K -m inrkit run ...`` starts K copies of the command; each notices
the torchrun environment (``WORLD_SIZE`` > 1) and joins one process group (gloo on the CPU,
nccl on GPUs). The scheme follows from MINR's layout:

- every rank builds the whole model from the same seed, so shared layers start identical;
- the items are split into contiguous blocks, one per rank; a rank holds only its own items'
  points and trains only their rows of the per-item parameters;
- after each step's backward pass, one all-reduce sums the shared parameters' gradients (and
  the per-item losses, for logging and the divergence check); per-item parameters never travel
  during training, so the traffic per step is the size of the shared layers, whatever N is;
- Adam then takes the same step on every rank's shared layers;
- at the end (and for every snapshot) the per-item rows are gathered so every rank holds the
  whole model; rank 0 evaluates it and writes the one run folder.

The loss is each item's MSE averaged over *all* items, so the summed gradients equal a
single-process run's up to floating-point summation order.

Code above this module never asks "is this distributed?": it talks to a :class:`ProcessGroup`,
and a single process is :class:`SingleProcess`, whose collectives do nothing.
"""

from __future__ import annotations

import abc
import atexit
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch
from torch import distributed as dist

from inrkit.errors import ConfigError, InrkitError
from inrkit.interfaces import INRModel
from inrkit.training.points import PointSet

T = TypeVar("T")


class ProcessGroup(abc.ABC):
    """This process's place among the processes training one run, and the collectives it needs."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: Whether Ctrl-C may save a snapshot (other processes may be inside a collective).
    snapshot_on_interrupt: bool = True

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that evaluates, writes the run folder and reports."""
        return self.rank == 0

    def items_of(self, n_items: int, rank: int | None = None) -> list[int]:
        """The contiguous block of item indices a rank trains (sizes differ by at most one)."""
        return partition(n_items, self.world_size)[self.rank if rank is None else rank]

    @abc.abstractmethod
    def on_main(self, action: Callable[[], T]) -> T:
        """Run ``action`` on rank 0 only and hand its result, or its error, to every rank."""

    @abc.abstractmethod
    def check_model(self, model: INRModel, sharing: str) -> None:
        """Refuse models this group cannot train exactly."""

    @abc.abstractmethod
    def reduce_gradients(self, shared: Sequence[torch.nn.Parameter], row_losses: torch.Tensor, points: PointSet) -> torch.Tensor:
        """Sum the shared gradients over ranks; return every item's loss ``(N,)``."""

    @abc.abstractmethod
    def gather_item_rows(self, model: INRModel, optimizer: torch.optim.Optimizer | None, points: PointSet) -> None:
        """Give every rank every item's per-item rows (and their optimiser state)."""


class SingleProcess(ProcessGroup):
    """One process trains every item: every collective is the identity."""

    def on_main(self, action: Callable[[], T]) -> T:
        return action()

    def check_model(self, model: INRModel, sharing: str) -> None:
        return None

    def reduce_gradients(self, shared: Sequence[torch.nn.Parameter], row_losses: torch.Tensor, points: PointSet) -> torch.Tensor:
        return row_losses

    def gather_item_rows(self, model: INRModel, optimizer: torch.optim.Optimizer | None, points: PointSet) -> None:
        return None


class TorchDistributed(ProcessGroup):
    """A ``torch.distributed`` process group started by torchrun (gloo on CPUs, nccl on GPUs)."""

    snapshot_on_interrupt = False

    def __init__(self, rank: int, world_size: int, local_rank: int, owns_group: bool) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        #: True when inrkit initialised the process group (it is then destroyed at exit).
        self.owns_group = owns_group

    def on_main(self, action: Callable[[], T]) -> T:
        """For steps with one outcome for the whole group, such as creating the run folder: if
        rank 0 fails (``--out`` already holds files, a full disk), every rank stops with the same
        message instead of the others waiting for rank 0 in the next collective."""
        payload: list[Any] = [None]
        error: BaseException | None = None
        if self.is_main:
            try:
                payload = [(True, action())]
            except InrkitError as exc:
                payload, error = [(False, exc)], exc
            except Exception as exc:  # noqa: BLE001 - any failure must reach the other ranks
                payload, error = [(False, InrkitError(f"rank 0 failed: {type(exc).__name__}: {exc}"))], exc
        dist.broadcast_object_list(payload, src=0)
        ok, value = payload[0]
        if not ok:
            mark_failed()
            raise error if error is not None else value
        return value

    def check_model(self, model: INRModel, sharing: str) -> None:
        if not model.capabilities.distributed:
            raise ConfigError(
                f"sharing {sharing!r} has its own optimisation loop, which distributed training does not "
                "split across processes; run it in one process"
            )

    def _own(self, points: PointSet) -> torch.Tensor:
        return points.item_ids if points.item_ids is not None else torch.arange(points.n_items, device=points.targets.device)

    def reduce_gradients(self, shared: Sequence[torch.nn.Parameter], row_losses: torch.Tensor, points: PointSet) -> torch.Tensor:
        """One all-reduce carries the shared gradients and every item's loss."""
        losses = torch.zeros(points.n_model_items, device=row_losses.device, dtype=row_losses.dtype)
        losses.index_copy_(0, self._own(points), row_losses)
        for p in shared:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            elif not p.grad.is_contiguous():
                p.grad = p.grad.contiguous()
        parts = [_flat(p.grad) for p in shared if p.grad is not None] + [losses]
        flat = torch.cat([part.to(losses.dtype) for part in parts])
        dist.all_reduce(flat)
        offset = 0
        for part in parts[:-1]:
            part.copy_(flat[offset : offset + part.numel()])
            offset += part.numel()
        return flat[offset:]

    def gather_item_rows(self, model: INRModel, optimizer: torch.optim.Optimizer | None, points: PointSet) -> None:
        """Each rank zeroes the rows it does not own and one sum per tensor fills them in: a row
        is owned by exactly one rank, so the sum is that rank's value, bit for bit."""
        own = self._own(points)
        mask = torch.zeros(model.n_items, dtype=torch.bool, device=own.device)
        mask[own] = True
        for tensor in _item_tensors(model, optimizer):
            view = torch.view_as_real(tensor) if tensor.is_complex() else tensor
            view.copy_(torch.where(mask.view(-1, *([1] * (view.dim() - 1))), view, torch.zeros_like(view)))
            dist.all_reduce(view)


def partition(n_items: int, world_size: int) -> list[list[int]]:
    """Split ``range(n_items)`` into ``world_size`` contiguous blocks, larger blocks first."""
    if n_items < world_size:
        raise ConfigError(
            f"{n_items} item(s) cannot be split across {world_size} processes; "
            f"use at most {n_items} process(es) (torchrun --nproc_per_node)"
        )
    base, extra = divmod(n_items, world_size)
    blocks, start = [], 0
    for rank in range(world_size):
        size = base + (1 if rank < extra else 0)
        blocks.append(list(range(start, start + size)))
        start += size
    return blocks


def is_main_process() -> bool:
    """Rank 0 of a torchrun group, or a process outside torchrun: the one that reports."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def requested_world_size() -> int:
    """The process count torchrun asked for (1 outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


def process_gpu(local_rank: int, local_world_size: int) -> torch.device:
    """The GPU a torchrun process trains on: ``cuda:LOCAL_RANK`` when the process sees all of the
    node's GPUs, ``cuda:0`` when it sees exactly one (``CUDA_VISIBLE_DEVICES`` set per process)."""
    visible = torch.cuda.device_count()
    if visible == 1 and local_world_size > 1 and os.environ.get("CUDA_VISIBLE_DEVICES", "").strip():
        return torch.device("cuda", 0)  # one GPU per process, chosen by the launcher
    if local_rank >= visible:
        raise ConfigError(
            f"process {local_rank} has no GPU of its own ({visible} visible to {local_world_size} processes); "
            "start at most one process per GPU, or give each process one GPU with CUDA_VISIBLE_DEVICES"
        )
    return torch.device("cuda", local_rank)


def join(device: torch.device) -> tuple[ProcessGroup, torch.device]:
    """This process's group: :class:`SingleProcess` outside torchrun, else join (or reuse) one.

    Under torchrun a CUDA device without an index becomes this process's own GPU
    (:func:`process_gpu`); that device, returned beside the group, may be passed back in (a second
    fit in the same process), any other GPU index is refused.
    """
    if requested_world_size() <= 1:
        return SingleProcess(), device
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run one process")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    if device.type == "cuda":
        own = process_gpu(local_rank, local_world_size)
        if device.index is not None and device.index != own.index:
            raise ConfigError(
                f"train.device {str(device)!r} names one GPU for all {requested_world_size()} processes; "
                "use 'cuda' or 'auto' (each process takes its own GPU)"
            )
        device = own
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            # device_id binds the group to this process's GPU at once (no guessing, no hang).
            dist.init_process_group(backend, timeout=timedelta(minutes=30), device_id=device if device.type == "cuda" else None)
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(f"could not join the torch.distributed process group ({backend}): {exc}") from None
        # One group for the process's lifetime: `inrkit compare` and scripts fit several runs.
        atexit.register(_destroy)
    return TorchDistributed(dist.get_rank(), dist.get_world_size(), local_rank, owns), device


#: Set when a collective step failed: the processes then leave without waiting for each other.
_failed = False


def mark_failed() -> None:
    """Record that this process stops on an error, so that exiting skips the parting barrier
    (a peer may never reach it, and waiting would last until the group's timeout)."""
    global _failed
    _failed = True


def _destroy() -> None:
    if not dist.is_initialized():
        return
    if _failed:
        dist.destroy_process_group()
        return
    # Leave together: tearing gloo down while a peer is still connected or already gone
    # can abort the process ("terminate called without an active exception").
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _flat(t: torch.Tensor) -> torch.Tensor:
    return (torch.view_as_real(t) if t.is_complex() else t).reshape(-1)


def _item_tensors(model: INRModel, optimizer: torch.optim.Optimizer | None) -> Iterable[torch.Tensor]:
    for p in model.items.parameters():
        yield p.data
        state = optimizer.state.get(p, {}) if optimizer is not None else {}
        for value in state.values():
            # the moments (shaped like the parameter) and LazyItemAdam's per-item step counts (N,)
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape in (p.shape, p.shape[:1]):
                yield value
