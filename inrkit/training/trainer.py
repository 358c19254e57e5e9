"""The generic trainer: many items, one optimiser, full-image steps in chunks, callbacks.

The trainer owns training: the chunked loss-and-backward loop (:class:`ChunkedStep`), the
optimiser and its schedule, mixed precision, the compiled forward pass, resumable snapshots,
evaluations and the callbacks. A model takes part only through the
:class:`~inrkit.interfaces.INRModel` protocol: its forward pass, its parameter layout and, for
strategies with their own optimisation, its ``training_step`` hook.

Each step sees every point of every item once, in chunks (same point range of every item at a
time) whose gradients accumulate into exactly the full-batch gradient. The loss is each item's
mean squared error, averaged over items, so items of different sizes weigh the same. With
``train.items_per_step`` a step sees every point of a mini-batch of items instead
(:mod:`inrkit.training.batches`), and :class:`~inrkit.training.optim.LazyItemAdam` moves only their rows.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pydantic
import torch

from inrkit.config import TrainConfig
from inrkit.devices import resolve_device
from inrkit.errors import (
    CheckpointError,
    ConfigError,
    TrainingError,
    TrainingInterrupted,
    format_validation_error,
    signal_number,
)
from inrkit.interfaces import Callback, FitContext, Forward, INRModel
from inrkit.metrics import psnr_from_mse
from inrkit.nn import check_state, state_bytes, trainable_bytes
from inrkit.results import Evaluation, RunMetrics, StepLog, TrainResult
from inrkit.training.batches import ItemBatches
from inrkit.training.distributed import ProcessGroup, join, partition
from inrkit.training.optim import LazyItemAdam
from inrkit.training.perf import (
    MEASURED_STEPS,
    autocast_dtype,
    compile_errors,
    compile_forward,
    compile_pays,
    compile_plan,
    matmul_precision,
)
from inrkit.training.points import (
    CPU_CHUNK_ROWS,
    EVAL_BLOCK_POINTS,
    Chunk,
    PointSet,
    activation_bytes_per_row,
    auto_chunk_points,
    auto_chunk_rows,
)

#: On the CPU, fewer points of each item than this per chunk switch to chunks over item blocks.
MIN_CPU_CHUNK_POINTS = 64
#: ``evaluator(model, step, final)``: render and score every item (rank 0 only).
Evaluator = Callable[[INRModel, int, bool], Evaluation]
#: ``on_snapshot(state)``: persist a resumable snapshot; returns where it was saved, if anywhere.
SnapshotWriter = Callable[[dict[str, Any]], "Path | None"]


class ChunkedStep:
    """One training step over a :class:`~inrkit.training.points.PointSet`, chunk by chunk.

    Implements :class:`~inrkit.interfaces.TrainingStep`: the view of the data a model's
    ``training_step`` hook gets. Consecutive chunks with the same items share one
    ``model.select_items`` block, so per-item rows are selected once per run of chunks.
    """

    def __init__(
        self,
        model: INRModel,
        points: PointSet,
        chunks: Sequence[Chunk],
        forward: Forward | None = None,
        autocast: torch.dtype | None = None,
    ) -> None:
        self.model = model
        self.points = points
        self.chunks = list(chunks)
        self._forward: Forward = forward or model
        self._autocast = autocast

    def use_forward(self, forward: Forward | None) -> None:
        """Run later steps through ``forward`` (a compiled one; ``None``: the model itself)."""
        self._forward = forward or self.model

    def with_points(self, points: PointSet, chunks: Sequence[Chunk]) -> ChunkedStep:
        """The same model, forward pass and precision over other points (a step's item mini-batch)."""
        return ChunkedStep(self.model, points, chunks, self._forward, self._autocast)

    @property
    def n_items(self) -> int:
        return self.points.n_items

    @property
    def device(self) -> torch.device:
        return self.points.targets.device

    def accumulate(self, forward: Forward | None = None) -> torch.Tensor:
        forward = forward or self._forward
        points = self.points
        per_item = torch.zeros(points.n_items, device=points.targets.device)
        device_type = points.targets.device.type
        for _, run in itertools.groupby(self.chunks, key=lambda chunk: id(chunk[1])):
            group = list(run)
            items = group[0][1]
            model_items = points.model_items(items)
            with self.model.select_items(model_items):
                for sl, _ in group:
                    coords = points.chunk_coords(sl, items)
                    with torch.autocast(device_type, dtype=self._autocast or torch.bfloat16, enabled=self._autocast is not None):
                        pred = forward(coords, model_items)
                    losses = points.item_losses(pred, sl, items)
                    losses.sum().backward()
                    if items is None:
                        per_item += losses.detach()
                    else:
                        per_item.index_add_(0, items, losses.detach())
        return per_item

    def losses(self, forward: Forward) -> torch.Tensor:
        points = self.points
        per_item = torch.zeros(points.n_items, device=points.targets.device)
        for sl, items in self.chunks:
            losses = points.item_losses(forward(points.chunk_coords(sl, items), points.model_items(items)), sl, items)
            per_item = per_item + losses if items is None else per_item.index_add(0, items, losses)
        return per_item

    def chunk_losses(self, forward: Forward) -> Iterator[torch.Tensor]:
        points = self.points
        for sl, items in self.chunks:
            yield points.loss(forward(points.chunk_coords(sl, items), points.model_items(items)), sl, items)


class CallbackList:
    """The fit's callbacks, called in order."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        for callback in callbacks:
            if not isinstance(callback, Callback):
                raise ConfigError(f"callbacks must be inrkit.interfaces.Callback instances, got {type(callback).__name__}")
        self.callbacks = list(callbacks)

    def on_fit_start(self, context: FitContext) -> None:
        for c in self.callbacks:
            c.on_fit_start(context)

    def on_step_end(self, context: FitContext, log: StepLog) -> None:
        for c in self.callbacks:
            c.on_step_end(context, log)

    def on_snapshot(self, context: FitContext, step: int, path: Path | None) -> None:
        for c in self.callbacks:
            c.on_snapshot(context, step, path)

    def on_evaluate(self, context: FitContext, evaluation: Evaluation) -> None:
        for c in self.callbacks:
            c.on_evaluate(context, evaluation)

    def on_fit_end(self, context: FitContext, result: TrainResult | None) -> None:
        for c in self.callbacks:
            c.on_fit_end(context, result)

    def on_results(self, context: FitContext, metrics: RunMetrics | None, run_dir: Path | None) -> None:
        for c in self.callbacks:
            c.on_results(context, metrics, run_dir)


class Trainer:
    """Adam with ``lr * ratio ** (t / T)`` decay over chunked full-image steps.

    ``config`` is a :class:`~inrkit.config.TrainConfig` or a dict of one; keyword ``settings``
    override its keys (``Trainer(steps=500, device="cpu")``). ``lr`` overrides ``config.lr``;
    when both are unset the model's activation's default learning rate is used.

    :meth:`fit` runs named steps over an explicit :class:`FitState`, as nerfstudio's trainer reads:
    :meth:`setup` (checks, chunks, optimiser, snapshot restored, callbacks, compilation),
    :meth:`train` (the loop, and Ctrl-C), :meth:`train_iteration` (one step: :meth:`read_loss`,
    the update, :meth:`snapshot_if_due`, :meth:`evaluate_if_due`) and :meth:`finish` (the final
    evaluation). A subclass may override any of them.
    """

    def __init__(
        self,
        config: TrainConfig | Mapping[str, Any] | None = None,
        *,
        lr: float | None = None,
        device: str | torch.device | None = None,
        **settings: Any,
    ) -> None:
        data = config.model_dump() if isinstance(config, TrainConfig) else dict(config or {})
        try:
            self.config = TrainConfig.model_validate({**data, **settings})
        except pydantic.ValidationError as exc:
            raise ConfigError(f"invalid training settings: {format_validation_error(exc, 'train.')}") from None
        self.lr = lr
        self.device = resolve_device(device if device is not None else self.config.device)
        #: After a fit that completed its steps: the finished training as a snapshot (what
        #: ``resume.pt`` would hold), for saving when the results cannot be written.
        self.final_snapshot: Callable[[], dict[str, Any]] | None = None
        #: The callbacks' context of the last fit (set when it starts).
        self.context: FitContext | None = None

    def plan_chunks(self, points: PointSet, model: INRModel | None = None) -> list[Chunk]:
        """How a step walks through the points.

        ``train.chunk_points`` given: that many points of every item per chunk. ``auto`` on the
        CPU: cache-sized chunks over all items (:data:`~inrkit.training.points.CPU_CHUNK_ROWS` rows), or
        over blocks of items when that would leave fewer than :data:`MIN_CPU_CHUNK_POINTS` points
        of each item per chunk (thousands of small items). On a
        GPU: chunks over blocks of items (:meth:`~inrkit.training.points.PointSet.item_block_chunks`), as
        large as half the free memory allows for the model's activations, so each item's
        weights are read about once per step however many items there are.
        """
        if self.config.chunk_points != "auto":
            return points.chunks(min(int(self.config.chunk_points), points.points))
        if self.device.type == "cuda":
            bytes_per_row = activation_bytes_per_row(model) if model is not None else 0
            return points.item_block_chunks(auto_chunk_rows(self.device, bytes_per_row))
        per_item = auto_chunk_points(points.n_items, points.points, self.device)
        if per_item < min(points.points, MIN_CPU_CHUNK_POINTS):
            # Many items: a few points of every item per chunk would make every chunk read and
            # write every item's weights (measured: 1,024 chunks of 10,000 crops, 112 s a step).
            return points.item_block_chunks(CPU_CHUNK_ROWS)
        return points.chunks(per_item)

    def param_groups(self, params: list[torch.nn.Parameter], shared: list[torch.nn.Parameter], lr: float) -> list[Any]:
        """One group, or with ``train.shared_lr_scale`` two: the shared parameters at the scaled rate."""
        scale = self.config.shared_lr_scale
        if scale == 1.0 or not shared:
            return params
        ids = {id(p) for p in shared}
        own = [p for p in params if id(p) not in ids]
        scaled = {"params": [p for p in params if id(p) in ids], "lr": lr * scale}
        return [{"params": own}, scaled] if own else [scaled]

    def item_batches(self, model: INRModel, points: PointSet, group: ProcessGroup) -> ItemBatches | None:
        """The step's item draws under ``train.items_per_step``; ``None`` trains every item every step."""
        k, n = self.config.items_per_step, points.n_model_items
        if k is None or k >= n:
            return None
        if not model.capabilities.distributed:
            raise ConfigError(
                f"train.items_per_step: {type(model).__name__} runs its own optimisation across items, "
                "which item mini-batches cannot split; leave items_per_step unset"
            )
        if k < group.world_size:
            raise ConfigError(f"train.items_per_step={k} is smaller than the number of processes ({group.world_size})")
        blocks = [group.items_of(n, r) for r in range(group.world_size)]
        return ItemBatches(blocks, [len(b) for b in partition(k, group.world_size)], self.config.seed, group.rank)

    def optimizer(self, model: INRModel, params: list[torch.nn.Parameter], lr: float, lazy: bool) -> torch.optim.Optimizer:
        """Adam over ``params``; with item mini-batches (``lazy``) :class:`~inrkit.training.optim.LazyItemAdam`,
        whose per-item group moves only the drawn items' rows."""
        shared = [p for p in model.shared.parameters() if p.requires_grad]
        if lazy:
            per_item = {id(p) for p in model.items.parameters()}
            groups = [
                {"params": [p for p in params if id(p) not in per_item], "lr": lr * self.config.shared_lr_scale},
                {"params": [p for p in params if id(p) in per_item], "item_rows": True},
            ]
            return LazyItemAdam([g for g in groups if g["params"]], lr=lr)
        # One fused kernel for the whole update on CUDA (it takes real floating-point tensors only).
        fused = self.device.type == "cuda" and bool(params) and not any(p.is_complex() for p in params)
        return torch.optim.Adam(
            self.param_groups(params, shared, lr) or [torch.zeros(1, requires_grad=True)], lr=lr, fused=fused or None,
        )

    def learning_rate(self, model: INRModel) -> float:
        """``lr`` given here, else ``train.lr``, else the model's activation's default."""
        if self.lr is not None:
            return self.lr
        return self.config.lr if self.config.lr is not None else model.activation.default_lr

    def fit(
        self,
        model: INRModel,
        data: PointSet | Sequence[np.ndarray],
        *,
        callbacks: Sequence[Callback] = (),
        evaluator: Evaluator | None = None,
        item_names: Sequence[str] | None = None,
        run_dir: Path | None = None,
        run_config: Mapping[str, Any] | None = None,
        resume_state: dict[str, Any] | None = None,
        on_snapshot: SnapshotWriter | None = None,
        group: ProcessGroup | None = None,
        run_group: str | None = None,
        results_follow: bool = False,
    ) -> TrainResult:
        """Train ``model`` on ``data`` and return the steps, time, loss history and evaluation.

        ``data`` is one array per item, ``(*spatial, channels)`` in [0, 1] (or a prepared
        :class:`~inrkit.training.points.PointSet`). ``evaluator`` renders and scores the model after the
        last step (and every ``train.eval_every`` steps). ``on_snapshot`` persists a resumable
        snapshot every ``train.checkpoint_every`` steps and on Ctrl-C (which then raises
        :class:`~inrkit.errors.TrainingInterrupted`); ``resume_state`` is such a snapshot to
        continue from. Under torchrun (or with an explicit ``group``) each process trains its
        share of the items; shared gradients are summed each step and every process ends
        holding the whole trained model. ``item_names``, ``run_dir``, ``run_config``,
        ``run_group`` (the experiment the fit belongs to) and ``results_follow`` (the caller calls
        the callbacks' ``on_results`` after ``on_fit_end``) are what the callbacks are told about
        the fit (:class:`~inrkit.interfaces.FitContext`; :attr:`context` keeps it).
        """
        if group is None:
            group, self.device = join(self.device)
        points = self._points(model, data, group).to(self.device)
        model.to(self.device)
        with matmul_precision(self.device, self.config.tf32):
            state = self.setup(
                model, points, group, callbacks=callbacks, evaluator=evaluator, item_names=item_names, run_dir=run_dir,
                run_config=run_config, resume_state=resume_state, on_snapshot=on_snapshot,
                run_group=run_group, results_follow=results_follow,
            )
            return self.train(state)

    @staticmethod
    def _compile_plan(cfg: TrainConfig, model: INRModel, device: torch.device, steps: int) -> tuple[str, str]:
        """:func:`~inrkit.training.perf.compile_plan`, with the one warning a forced compilation
        of a complex-valued network gets (it is skipped)."""
        plan, reason = compile_plan(cfg.compile, model, device, steps)
        if cfg.compile is True and plan == "eager" and steps > 0:
            warnings.warn(f"train.compile is skipped: the network has {reason}", RuntimeWarning, stacklevel=4)
        return plan, reason

    @staticmethod
    def _compiled(model: INRModel, step_data: ChunkedStep, points: PointSet, mini_batches: bool) -> Forward:
        """The compiled forward pass, with the step's chunks made one shape where they can be
        (:meth:`~inrkit.training.points.PointSet.equal_chunks`; not for item mini-batches, whose
        subsets differ per step): one static graph for the whole fit."""
        # A fresh compilation per fit: `compare` fits several models, and after 8 recompilations of
        # the same forward code dynamo would silently fall back to eager.
        torch._dynamo.reset()
        equal = None if mini_batches else points.equal_chunks(step_data.chunks)
        if equal is not None:
            step_data.chunks = equal
        return compile_forward(model, dynamic=False if equal is not None else None)

    def _points(self, model: INRModel, data: PointSet | Sequence[np.ndarray], group: ProcessGroup) -> PointSet:
        if isinstance(data, PointSet):
            points = data
        else:
            arrays = list(data)
            if not arrays:
                raise ConfigError("nothing to train on: give one array per item")
            if len({a.shape[-1] for a in arrays}) > 1:
                raise ConfigError("the items' arrays differ in their channel count (the last axis)")
            own = group.items_of(len(arrays))
            points = PointSet.from_arrays([arrays[i] for i in own], item_ids=own, loss_items=len(arrays))
        if points.loss_items != model.n_items:
            raise ConfigError(f"the model holds {model.n_items} item(s) but the data has {points.loss_items}")
        out_dim = model.spec.out_dim
        if points.targets.shape[-1] != out_dim:
            raise ConfigError(f"the model outputs {out_dim} channel(s) but the data has {points.targets.shape[-1]}")
        return points

    @staticmethod
    def _restore(
        model: INRModel, optimizer: torch.optim.Optimizer, scheduler: Any, state: dict[str, Any], steps: int
    ) -> tuple[list[dict[str, Any]], int, float]:
        """Load a snapshot into the model, optimiser and schedule; any mismatch (a config edited
        after the snapshot was saved, a damaged file) is one :class:`~inrkit.errors.CheckpointError`."""
        hint = " (was the run's config.json edited after the snapshot was saved?)"
        check_state(model.state_dict(), state["model"], "the snapshot resume.pt", hint)
        step = state["step"]
        if not 0 <= step <= steps:
            raise CheckpointError(f"the snapshot resume.pt is at step {step}, but the run has {steps} steps{hint}")
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history = [dict(h) for h in state["history"]]
            seconds = float(state["seconds"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise CheckpointError(f"the snapshot resume.pt does not fit the run: {reason}{hint}") from None
        return history, step + 1, seconds

    def setup(
        self,
        model: INRModel,
        points: PointSet,
        group: ProcessGroup,
        *,
        callbacks: Sequence[Callback] = (),
        evaluator: Evaluator | None = None,
        item_names: Sequence[str] | None = None,
        run_dir: Path | None = None,
        run_config: Mapping[str, Any] | None = None,
        resume_state: dict[str, Any] | None = None,
        on_snapshot: SnapshotWriter | None = None,
        run_group: str | None = None,
        results_follow: bool = False,
    ) -> FitState:
        """Everything before the first step: the model's claims checked, the chunks planned, the
        optimiser and its schedule built (and restored from ``resume_state``), the callbacks'
        context, the compiled forward pass and the item draws."""
        cfg = self.config
        if cfg.precision != "fp32" and not model.capabilities.bf16:
            raise ConfigError(
                f"train.precision={cfg.precision!r}: {type(model).__name__} runs its own forward pass or "
                "optimisation loop, which does not keep its first and last layers in float32; use fp32"
            )
        group.check_model(model, type(model).__name__)
        lr = self.learning_rate(model)
        steps = cfg.steps
        chunks = self.plan_chunks(points, model)
        params = [p for p in model.parameters() if p.requires_grad]
        shared = [p for p in model.shared.parameters() if p.requires_grad]
        if not params:  # everything frozen (encoding into COIN++ fits its latents afterwards)
            steps = 0
        batches = self.item_batches(model, points, group) if steps else None
        optimizer = self.optimizer(model, params, lr, lazy=batches is not None)
        ratio = cfg.lr_final_ratio
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: ratio ** (min(t, steps) / max(steps, 1)))
        log_every = cfg.log_every or max(1, steps // 100)
        history: list[dict[str, Any]] = []
        first_step, seconds_before = 1, 0.0
        if resume_state is not None:
            history, first_step, seconds_before = self._restore(model, optimizer, scheduler, resume_state, steps)
        names = tuple(item_names) if item_names is not None else tuple(str(i) for i in range(points.loss_items))
        context = FitContext(
            total_steps=steps, start_step=first_step - 1, item_names=names, lr=lr, device=str(self.device),
            run_dir=run_dir, config=dict(run_config or {}), model=model, group=run_group,
            results_follow=results_follow,
        )
        self.context = context
        hooks = CallbackList(callbacks if group.is_main else [])
        plan, reason = self._compile_plan(cfg, model, self.device, steps - first_step + 1)
        compiling = plan == "compile"
        step_data = ChunkedStep(model, points, chunks, None, autocast_dtype(cfg.precision))
        if compiling:
            step_data.use_forward(self._compiled(model, step_data, points, batches is not None))
        draws = _MiniBatches(self, model, points, group, batches, step_data) if batches is not None else None
        return FitState(
            model=model, points=points, group=group, steps=steps, lr=lr, shared=shared, optimizer=optimizer,
            scheduler=scheduler, step_data=step_data, draws=draws, hooks=hooks,
            context=context, evaluator=evaluator, on_snapshot=on_snapshot, compiling=compiling, log_every=log_every,
            compile_plan=plan, compile_reason=reason, compile_step=first_step if compiling else 0,
            # Reading the loss makes the host wait for the device: on a GPU only at log steps.
            check_every=1 if self.device.type == "cpu" else log_every,
            history=history, first_step=first_step, seconds_before=seconds_before, completed=first_step - 1,
        )

    def train(self, state: FitState) -> TrainResult:
        """Every step from ``state.first_step``, then :meth:`finish`. The callbacks hear of the start
        and, always, of the end (with ``None`` when the fit stopped with an error)."""
        result: TrainResult | None = None
        state.start = time.perf_counter()
        state.hooks.on_fit_start(state.context)
        try:
            state.model.train()
            try:
                for step in range(state.first_step, state.steps + 1):
                    self.train_iteration(state, step)
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM delivered as errors.Terminated
                self.interrupted(state, exc)
            result = self.finish(state)
            return result
        finally:
            state.hooks.on_fit_end(state.context, result)

    def train_iteration(self, state: FitState, step: int) -> StepLog:
        """One step: the gradients of the step's points (summed across processes), the loss where
        it is read, the update, then what is due after it: callbacks, a snapshot, an evaluation."""
        optimizer = state.optimizer
        optimizer.zero_grad(set_to_none=True)
        step_lr = float(optimizer.param_groups[0]["lr"])
        started = time.perf_counter()
        compiling_now = state.compiling and step == state.compile_step
        this_step = self._step_data(state, step)
        try:
            with compile_errors(compiling_now):
                per_item = state.model.training_step(this_step)
        except TrainingError as exc:
            if not (compiling_now and state.compile_plan == "measure"):
                raise
            # train.compile=auto: a compilation that fails costs nothing but the attempt.
            warnings.warn(f"{exc}; training eagerly", RuntimeWarning, stacklevel=2)
            state.compiling, state.compile_reason = False, f"auto: compilation failed, eager ({exc})"
            state.step_data.use_forward(None)
            optimizer.zero_grad(set_to_none=True)
            this_step = self._step_data(state, step)
            per_item = state.model.training_step(this_step)
        per_item = state.group.reduce_gradients(state.shared, per_item, this_step.points)
        log = self.read_loss(state, step, step_lr, per_item)
        optimizer.step()
        state.scheduler.step()
        state.completed = step
        if compiling_now and state.compiling:
            # The step that compiles: its time is reported apart, not as training.
            state.compile_seconds = time.perf_counter() - started
        elif state.compile_plan == "measure" and not state.compiling and step - state.first_step < MEASURED_STEPS:
            self._decide_compile(state, step, started)
        state.hooks.on_step_end(state.context, log)
        self.snapshot_if_due(state, step)
        self.evaluate_if_due(state, step)
        return log

    @staticmethod
    def _step_data(state: FitState, step: int) -> ChunkedStep:
        """The step's points: this step's item mini-batch, or every item."""
        return state.draws.step_data(step, state.optimizer) if state.draws is not None else state.step_data

    def _decide_compile(self, state: FitState, step: int, started: float) -> None:
        """``train.compile=auto``: time this eager step; after :data:`MEASURED_STEPS` of them,
        compile from the next step on if :func:`~inrkit.training.perf.compile_pays`."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # a timed step only: the decision needs its real length
        seconds = time.perf_counter() - started
        state.measured = seconds if state.measured is None else min(state.measured, seconds)
        if step - state.first_step + 1 < MEASURED_STEPS:
            return
        pays, state.compile_reason = compile_pays(state.measured, state.steps - step, self.device)
        if pays:
            state.step_data.use_forward(self._compiled(state.model, state.step_data, state.points, state.draws is not None))
            state.compiling, state.compile_step = True, step + 1

    def read_loss(self, state: FitState, step: int, step_lr: float, per_item: torch.Tensor) -> StepLog:
        """The step's log. The loss is read (a host sync on a GPU) every ``check_every`` steps and
        at log steps, and a non-finite one stops the fit; log steps also record each item's PSNR
        in the history."""
        steps, draws, log_every = state.steps, state.draws, state.log_every
        total = per_item.sum()
        log = StepLog(step=step, total_steps=steps, lr=step_lr)
        if draws is not None and step % log_every != 0 and step != steps:
            draws.remember(per_item)
        if step % state.check_every == 0 or step == steps or step % log_every == 0:
            loss_value = state.loss_value = float(total)
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"the loss became {loss_value} at step {step} of {steps}; training diverged. "
                    f"Lower the learning rate (--lr, it was {state.lr:g})."
                )
            log = StepLog(step=step, total_steps=steps, lr=step_lr, loss=loss_value, psnr=psnr_from_mse(loss_value / 4.0))
            if step % log_every == 0 or step == steps:
                # Item i's share is its MSE / N on [-1, 1] targets: x N / 4 is its [0, 1] MSE.
                if draws is not None:
                    item_mse = draws.latest_mse(per_item).tolist()
                else:
                    item_mse = (per_item * state.points.loss_items / 4.0).tolist()
                item_psnr = [psnr_from_mse(m) for m in item_mse]
                state.history.append({"step": step, "loss": loss_value, "psnr": log.psnr, "item_psnr": item_psnr})
                log = dataclasses.replace(log, item_psnr=tuple(item_psnr))
        return log

    def snapshot_if_due(self, state: FitState, step: int) -> None:
        """Every ``train.checkpoint_every`` steps (before the last): a resumable snapshot."""
        every = self.config.checkpoint_every
        if every and step % every == 0 and step < state.steps:
            snapshot = self.snapshot(state)
            state.hooks.on_snapshot(state.context, step, state.on_snapshot(snapshot) if state.on_snapshot is not None else None)

    def evaluate_if_due(self, state: FitState, step: int) -> None:
        """Every ``train.eval_every`` steps (before the last): an evaluation, then training goes on."""
        every = self.config.eval_every
        if every and step % every == 0 and step < state.steps:
            state.group.gather_item_rows(state.model, state.optimizer, state.points)
            state.model.prepare_evaluation(state.step_data)
            self.evaluate(state, step, final=False)
            state.model.train()

    def snapshot(self, state: FitState) -> dict[str, Any]:
        """The fit as a resumable snapshot; a collective: every process takes part."""
        state.group.gather_item_rows(state.model, state.optimizer, state.points)
        return state.current_state()

    def evaluate(self, state: FitState, step: int, final: bool) -> Evaluation | None:
        """Rank 0 evaluates while the others wait (an error there stops every rank) and tells the
        callbacks; ``None`` without an evaluator and on the other ranks."""
        if state.evaluator is None:
            return None
        evaluator = state.evaluator
        box: list[Evaluation] = []
        state.group.on_main(lambda: box.append(evaluator(state.model, step, final)))
        if box:
            state.hooks.on_evaluate(state.context, box[0])
            if not final:
                box[0].close()  # the model trains on: its reconstructions can no longer be rendered
        return box[0] if box else None

    def interrupted(self, state: FitState, exc: BaseException) -> NoReturn:
        """Ctrl-C or SIGTERM during the steps: a snapshot where one can be written (so that
        ``--resume`` continues), then :class:`~inrkit.errors.TrainingInterrupted`."""
        signum = signal_number(exc)
        if state.on_snapshot is None or not state.group.snapshot_on_interrupt:
            raise TrainingInterrupted(f"interrupted at step {state.completed} of {state.steps}", signum) from None
        path = state.on_snapshot(self.snapshot(state))
        state.hooks.on_snapshot(state.context, state.completed, path)
        raise TrainingInterrupted(
            f"interrupted after step {state.completed} of {state.steps}; a snapshot was saved, continue with --resume", signum
        ) from None

    def finish(self, state: FitState) -> TrainResult:
        """After the last step: every item's rows gathered, gradients freed, the final evaluation."""
        model = state.model
        state.group.gather_item_rows(model, state.optimizer, state.points)
        model.zero_grad(set_to_none=True)  # the last step's gradients: freed before evaluating and writing
        self.final_snapshot = state.current_state  # the rows are gathered: no collective needed to save it
        model.prepare_evaluation(state.step_data)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = state.seconds_before + time.perf_counter() - state.start - (state.compile_seconds or 0.0)
        evaluation = self.evaluate(state, state.steps, final=True)
        return TrainResult(
            steps=state.steps, seconds=seconds, final_loss=state.loss_value, history=state.history,
            evaluation=evaluation, compile_seconds=state.compile_seconds,
            compiled=state.compiling, compile_reason=state.compile_reason,
        )


@dataclasses.dataclass
class FitState:
    """One fit in progress: what :meth:`Trainer.setup` builds and the named steps after it
    (:meth:`~Trainer.train`, :meth:`~Trainer.train_iteration`, :meth:`~Trainer.finish`) share."""

    model: INRModel
    points: PointSet
    group: ProcessGroup
    #: Steps of the fit (0 when nothing is trainable).
    steps: int
    lr: float
    #: The shared parameters whose gradients are summed across processes.
    shared: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    #: The whole step's data; with item mini-batches, ``draws`` gives each step's part of it.
    step_data: ChunkedStep
    draws: _MiniBatches | None
    hooks: CallbackList
    context: FitContext
    evaluator: Evaluator | None
    on_snapshot: SnapshotWriter | None
    compiling: bool
    log_every: int
    #: The loss is read (a host sync) every this many steps.
    check_every: int
    history: list[dict[str, Any]]
    first_step: int
    #: Training time before a resumed snapshot.
    seconds_before: float
    #: The last completed step.
    completed: int
    start: float = 0.0
    loss_value: float = math.nan
    compile_seconds: float | None = None
    #: ``compile``, ``eager`` or ``measure`` (``train.compile=auto``, deciding after the first steps).
    compile_plan: str = "eager"
    #: Why the fit is (or is not) compiled, as ``metrics.json`` records it.
    compile_reason: str = ""
    #: The step that compiles (0: none).
    compile_step: int = 0
    #: ``auto``: the quickest eager step timed so far.
    measured: float | None = None

    def current_state(self) -> dict[str, Any]:
        """The fit as a snapshot (what ``resume.pt`` holds); this process's rows as they are."""
        return {
            "step": self.completed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": self.history,
            "seconds": self.seconds_before + time.perf_counter() - self.start,
        }


class _MiniBatches:
    """A fit's item mini-batches: each step's data, and each item's loss at its latest draw."""

    def __init__(
        self, trainer: Trainer, model: INRModel, points: PointSet, group: ProcessGroup, batches: ItemBatches,
        whole: ChunkedStep,
    ) -> None:
        self.trainer, self.model, self.points, self.batches, self.whole = trainer, model, points, batches, whole
        self._chunks: dict[tuple[tuple[int, ...], ...], list[Chunk]] = {}
        # Each item's [0, 1] MSE before its first draw: one forward pass without gradients.
        with torch.no_grad():
            initial = group.reduce_gradients([], whole.losses(model), points)
        self.mse = initial * points.loss_items / 4.0

    def step_data(self, step: int, optimizer: torch.optim.Optimizer) -> ChunkedStep:
        """This process's items of ``step`` as the step's data; tells the optimiser their rows."""
        device = self.points.targets.device
        rows = torch.as_tensor(self.batches.draw(step), device=device)
        self.step_items = self.batches.drawn_items(step)
        subset = self.points.subset(rows, loss_items=len(self.step_items))
        if isinstance(optimizer, LazyItemAdam):
            optimizer.rows = self.points.model_items(rows)
        key = subset.shapes
        if key not in self._chunks:
            if len(self._chunks) > 64:  # mixed sizes: many keys; planning again is cheap
                self._chunks.clear()
            self._chunks[key] = self.trainer.plan_chunks(subset, self.model)
        return self.whole.with_points(subset, self._chunks[key])

    def remember(self, per_item: torch.Tensor) -> None:
        """Keep the drawn items' losses (``per_item``: this process's rows or every model item)."""
        drawn = torch.as_tensor(self.step_items, device=per_item.device)
        if per_item.shape[0] == self.points.n_model_items:  # reduced across processes
            per_item = per_item.index_select(0, drawn)
        self.mse = self.mse.to(per_item.device).index_copy(0, drawn, per_item.detach() * len(self.step_items) / 4.0)

    def latest_mse(self, per_item: torch.Tensor) -> torch.Tensor:
        """Every item's [0, 1] MSE at its latest draw, this step's included."""
        self.remember(per_item)
        return self.mse


def fit_memory(
    model: INRModel,
    train_shapes: Sequence[Sequence[int]],
    eval_shapes: Sequence[Sequence[int]],
    channels: int,
    config: TrainConfig,
    device: torch.device,
    target_bytes: int = 4,
) -> dict[str, int]:
    """About how many bytes a fit of ``model`` needs, by part: its tensors, their gradients and
    Adam's two moments and its scratch for one tensor's update, the padded targets (``target_bytes`` per value: 1 for 8-bit images
    stored as codes, see :func:`~inrkit.training.points.integer_codes`), one chunk's activations, and the
    evaluation's renders.

    ``model`` may live on the meta device (nothing allocated), which is how
    :func:`inrkit.runs.fit.prepare` asks before building the real one.
    """
    trainable = trainable_bytes(model)
    n_items = len(train_shapes)
    points = max(math.prod(s) for s in train_shapes)
    step_items = min(n_items, config.items_per_step or n_items)  # a step's items
    if config.chunk_points != "auto":
        rows = min(int(config.chunk_points), points) * step_items
    elif device.type == "cuda":
        rows = 4096  # the chunk adapts to the free memory, down to this
    else:
        rows = min(CPU_CHUNK_ROWS, points * step_items)
    per_row = activation_bytes_per_row(model) or 16 * int(model.spec.width) * int(model.spec.layers)
    # Adam's update takes a scratch tensor the size of the tensor it updates (one at a time on the
    # CPU); lazy Adam (item mini-batches) updates only the drawn rows of a per-item tensor.
    per_item = {id(p) for p in model.items.parameters()}
    scratch = max(
        (p.numel() * p.element_size() * (step_items / n_items if id(p) in per_item else 1.0)
         for p in model.parameters() if p.requires_grad),
        default=0.0,
    )
    return {
        "parameters": state_bytes(model),
        "gradients": trainable,
        "optimiser": 2 * trainable,
        "optimiser step": int(scratch),
        "targets": n_items * points * channels * target_bytes,
        "activations": rows * per_row,
        # one block of items rendered (see inrkit.training.evaluate), its padded outputs and float copies for scoring
        "evaluation": 3 * eval_block_points(eval_shapes) * channels * 4,
    }


def eval_block_points(eval_shapes: Sequence[Sequence[int]]) -> int:
    """Points of the largest block of items an evaluation renders at once (at most about
    :data:`~inrkit.training.points.EVAL_BLOCK_POINTS`, or one item where an item is larger)."""
    sizes = [math.prod(s) for s in eval_shapes]
    return min(sum(sizes), max([EVAL_BLOCK_POINTS, *sizes]))
