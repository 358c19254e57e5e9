"""``inrkit bench``: how fast one training step is, against a naive loop and the machine's roofline.

All three are measured in the same process, so only their ratios matter on a shared machine:

- inrkit's step: the trainer's chunked, batched step (forward, backward, Adam) over every point;
- the naive reference: one plain ``nn.Sequential`` SIREN per image, full-batch forward/backward
  per image in a Python loop, then Adam — the way the public SIREN code fits an image;
- the ensembling reference: the same per-image SIRENs as one ``torch.func`` ensemble
  (``stack_module_state`` + ``vmap`` over ``functional_call``), the standard PyTorch way to train
  many small same-shaped networks at once;
- the floor: the step's matrix-product FLOPs at the GEMM rate measured here, plus its sine and
  cosine evaluations at the elementwise rate measured here (the time of today's kernel structure);
- the physical floors, which show what fusion could still gain: the FLOPs at the rate of a
  large compute-bound GEMM (:func:`peak_gemm_rate`), and the bytes the step moves
  (:func:`step_bytes`) at the measured copy bandwidth (:func:`copy_bandwidth`); the larger of
  the two is the physical floor. The ``torch.func`` ensemble is timed compiled as well as eager.
"""

from __future__ import annotations

import copy
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from inrkit.coords import grid
from inrkit.devices import resolve_device
from inrkit.errors import ConfigError
from inrkit.factory import create_model
from inrkit.interfaces import INRModel
from inrkit.limits import MAX_BENCH_SIDE, available_memory, format_bytes, memory_check_enabled
from inrkit.training.perf import autocast_dtype, compile_errors, compile_forward, matmul_precision
from inrkit.training.points import CPU_CHUNK_ROWS, GPU_CHUNK_ROWS, PointSet, activation_bytes_per_row
from inrkit.training.trainer import ChunkedStep, Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(step: Callable[[], object], repeats: int, device: torch.device) -> float:
    step()  # warm-up: allocators, caches, lazy initialisation
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def profile_top(step: Callable[[], object], device: torch.device, steps: int = 3, top: int = 12) -> list[dict[str, Any]]:
    """The operators that take the most time in ``steps`` calls of ``step`` (``torch.profiler``):
    name, calls per step and self time per step in ms, on the card's timeline when there is one
    (kernels) and the host's otherwise. Where a step loses to a reference, this says to what."""
    import warnings

    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    step()  # warm-up outside the trace
    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Profiler clears events.*")  # compiled steps say this; harmless
        with profile(activities=activities) as prof:
            for _ in range(steps):
                step()
            _sync(device)
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    # Host-side operators only: on a card each kernel's time is also listed under its own long name.
    events = [e for e in prof.key_averages() if e.device_type == DeviceType.CPU and getattr(e, attr, 0.0) > 0]
    events.sort(key=lambda e: getattr(e, attr), reverse=True)
    return [
        {"name": e.key, "calls_per_step": e.count / steps, "self_ms_per_step": getattr(e, attr) / 1e3 / steps}
        for e in events[:top]
    ]


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


class _Sine(nn.Module):
    def __init__(self, omega: float) -> None:
        super().__init__()
        self.omega = omega

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega * x)


def naive_siren(width: int, layers: int, omega: float = 30.0) -> nn.Sequential:
    modules: list[nn.Module] = [nn.Linear(2, width), _Sine(omega)]
    for _ in range(layers - 2):
        modules += [nn.Linear(width, width), _Sine(omega)]
    modules.append(nn.Linear(width, 3))
    return nn.Sequential(*modules)


def ensemble_step(
    nets: list[nn.Sequential], coords: torch.Tensor, targets: torch.Tensor, compiled: bool = False
) -> tuple[Callable[[], None], dict[str, torch.Tensor]]:
    """One Adam step of ``nets`` trained as a ``torch.func`` ensemble, and the stacked parameters it
    trains: each parameter stacked on a leading item axis, one ``vmap``-ed forward over every item
    (all items share ``coords``). ``compiled``: the loss under ``torch.compile``, as a
    knowledgeable peer would run it."""
    from torch.func import functional_call, stack_module_state

    params, buffers = stack_module_state(nets)  # leaves of shape (items, ...) that require grad
    template = copy.deepcopy(nets[0]).to("meta")

    def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(template, (p, b), (x,))

    forward = torch.vmap(one, in_dims=(0, 0, None))
    optimizer = torch.optim.Adam(list(params.values()), lr=1e-4)

    def loss(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
        return ((forward(p, b, coords) - targets) ** 2).mean(dim=(1, 2)).sum()

    loss_fn = torch.compile(loss, dynamic=False) if compiled else loss

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(params, buffers).backward()
        optimizer.step()

    return step, params


def _op_seconds(op: Callable[[], object], device: torch.device, repeats: int, iterations: int) -> float:
    """Seconds per call of one operation: CUDA events over ``iterations`` calls on a card, the
    median of ``repeats`` timed calls on the CPU."""
    if device.type == "cuda":
        return _device_seconds(op, device, iterations)
    return _median_seconds(op, repeats, device)


def _device_seconds(op: Callable[[], object], device: torch.device, iterations: int) -> float:
    """Seconds per call of a short GPU operation: CUDA events around many calls, so that launch
    latency and the host timer do not dominate a kernel of a few microseconds."""
    op()
    torch.cuda.synchronize(device)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(iterations):
        op()
    end.record()
    torch.cuda.synchronize(device)
    return begin.elapsed_time(end) / 1e3 / iterations


def machine_rates(width: int, device: torch.device, repeats: int = 5, precision: str = "fp32") -> tuple[float, float]:
    """(GEMM FLOP/s, sine evaluations/s) measured on shapes like a training step's.

    On the CPU, medians of single calls on 16,384 rows. On a GPU, the GPU's chunk size
    (:data:`~inrkit.training.points.GPU_CHUNK_ROWS` rows) timed with CUDA events over 50 calls; with
    ``precision="bf16"`` the GEMM rate is bf16's (the hidden layers' products then run in bf16).
    """
    cuda = device.type == "cuda"
    rows = GPU_CHUNK_ROWS if cuda else 16384
    dtype = torch.bfloat16 if cuda and precision == "bf16" else torch.float32
    a = torch.randn(rows, width, device=device, dtype=dtype)
    b = torch.randn(width, width, device=device, dtype=dtype)
    x = torch.randn(rows, width, device=device)
    gemm = _op_seconds(lambda: torch.mm(a, b), device, repeats, 50)
    sine = _op_seconds(lambda: torch.sin(x), device, repeats, 50)
    return 2.0 * rows * width * width / gemm, rows * width / sine


def peak_gemm_rate(device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of a large, compute-bound float32 square GEMM (2048² on the CPU, 8192² on a GPU):
    the arithmetic limit a step's products could reach with perfect kernels."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    return 2.0 * n**3 / _op_seconds(lambda: torch.mm(a, b), device, repeats, 10)


def copy_bandwidth(device: torch.device, repeats: int = 5) -> float:
    """Bytes/s a plain copy moves (read plus write) on a buffer far larger than the caches (64 MiB
    on the CPU, 2 GiB on a GPU): the memory limit every kernel of a step shares."""
    numel = (512 << 20) if device.type == "cuda" else (16 << 20)
    x = torch.empty(numel, device=device)
    y = torch.empty_like(x)
    return 2.0 * numel * 4 / _op_seconds(lambda: y.copy_(x), device, repeats, 20)


def step_bytes(model: INRModel, rows: int) -> float:
    """Bytes one training step moves to and from memory for the kernel layout of the eager step
    (omega inside the GEMMs), float32, per the count in ``docs/performance.md``.

    Per point and activated layer of ``in`` inputs and ``out`` units: forward, the product reads
    ``in`` and writes ``out`` values, the activation reads and writes ``out``; backward, the
    activation's gradient reads two and writes one ``out``-wide tensor, the input gradient's
    product reads ``out`` and writes ``in``, the weight gradient's reads ``in`` and ``out``. The
    last layer has no activation; the loss reads the output and the target and writes the output's
    gradient. Weights are read a few times per chunk and are left out (small against the points).
    """
    values = 0.0
    for d in getattr(model, "layer_defs", ()):
        i, o = d.in_features, d.out_features
        values += (i + o) + (i + o) + (o + i)  # forward product, dX product, dW product
        if d.position != "last":
            values += 2 * o + 3 * o  # activation forward; its gradient
        else:
            values += 3 * o  # the loss: output, target, output gradient
    return 4.0 * values * rows


def step_work(model: INRModel, rows: int) -> tuple[float, float]:
    """(matrix FLOPs, sine/cosine evaluations) of one training step over ``rows`` points.

    Each linear layer costs 2*in*out FLOPs per row forward and twice that backward; each
    activated layer evaluates one sine per unit forward and one cosine backward. The layers are
    read from ``model.layer_defs`` (:class:`~inrkit.nn.MultiINR`'s layer list).
    """
    flops = sines = 0.0
    for d in getattr(model, "layer_defs", ()):
        flops += 6.0 * rows * d.in_features * d.out_features
        if d.position != "last":
            sines += 2.0 * rows * d.out_features
    return flops, sines


def run_bench(
    *, items: int, size: int, width: int, layers: int, sharing: str = "minr", activation: str = "siren",
    repeats: int = 5, device: str = "auto", naive: bool = True, compile: bool = False, precision: str = "fp32",
    tf32: bool = True, chunk_points: int | None = None, profile: bool = False,
) -> dict[str, Any]:
    """Measure and return the step times, their ratios, the floor and the peak memory.

    ``compile``, ``precision`` and ``tf32`` are the training switches of the same names
    (:class:`~inrkit.config.TrainConfig`); they apply to inrkit's step only, the naive reference
    stays the plain eager loop (TF32, a process-wide setting, applies to all three measurements).
    ``profile`` adds each step's most expensive operators (:func:`profile_top`) under ``profile``.
    """
    dev = resolve_device(device)
    check_bench_memory(items=items, size=size, width=width, layers=layers, sharing=sharing, activation=activation, naive=naive, device=dev)
    with matmul_precision(dev, tf32):
        result = _run_bench(
            dev, items=items, size=size, width=width, layers=layers, sharing=sharing, activation=activation,
            repeats=repeats, naive=naive, compile=compile, precision=precision, chunk_points=chunk_points,
            profile=profile,
        )
    result["tf32"] = tf32 and dev.type == "cuda"
    return result


def check_bench_memory(
    *, items: int, size: int, width: int, layers: int, sharing: str, activation: str, naive: bool, device: torch.device
) -> None:
    """Refuse a benchmark that cannot fit in memory, before allocating it: the images, targets and
    model (built on the meta device first), its gradients and Adam state, one chunk's activations,
    and the naive loop's full-batch activations."""
    if not 2 <= size <= MAX_BENCH_SIDE:
        raise ConfigError(f"bench --size must be between 2 and {MAX_BENCH_SIDE} (got {size})")
    if not memory_check_enabled():
        return
    with torch.device("meta"):
        model = create_model(activation, sharing, item_shapes=[(size, size)] * items, width=width, layers=layers)
    points = size * size
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    parts = {
        "images and targets": 2 * items * points * 3 * 4,
        "model, gradients, Adam": 4 * params,
        "activations": min(CPU_CHUNK_ROWS, items * points) * (activation_bytes_per_row(model) or 16 * width * layers),
        "naive loop": (4 * params + points * width * layers * 16) if naive else 0,
        "torch.func ensemble": items * points * width * layers * 16 if naive else 0,
    }
    need = sum(parts.values())
    if device.type == "cuda":
        have: int | None = int(torch.cuda.mem_get_info(device)[0])
    else:
        have = available_memory()
    if have is not None and need > have:
        shown = ", ".join(f"{k} {format_bytes(v)}" for k, v in parts.items() if v)
        raise ConfigError(
            f"this benchmark needs about {format_bytes(need)} of memory ({shown}), but {format_bytes(have)} is "
            "available; use a smaller --size, --items, --width or --layers"
        )


def _run_bench(
    dev: torch.device, *, items: int, size: int, width: int, layers: int, sharing: str, activation: str,
    repeats: int, naive: bool, compile: bool, precision: str, chunk_points: int | None, profile: bool,
) -> dict[str, Any]:
    torch.manual_seed(0)
    images = [torch.rand(size, size, 3).numpy() for _ in range(items)]
    points = PointSet.from_arrays(images).to(dev)
    model = create_model(
        activation, sharing, item_shapes=[(size, size)] * items, width=width, layers=layers, device=dev
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True if dev.type == "cuda" else None)
    chunks = Trainer(chunk_points=chunk_points or "auto", device=dev).plan_chunks(points, model)  # as a fit would
    chunk = max(c.stop - c.start for c, _ in chunks)
    compile_seconds = None
    started = time.perf_counter()
    if compile:  # one graph, as a compiled fit runs it (PointSet.equal_chunks)
        equal = points.equal_chunks(chunks)
        chunks = equal if equal is not None else chunks
    forward = compile_forward(model, dynamic=False if compile and equal is not None else None) if compile else None
    step = ChunkedStep(model, points, chunks, forward, autocast_dtype(precision))
    if compile:
        with compile_errors(True):
            model.training_step(step)  # compiles; its gradients are discarded below
        _sync(dev)
        compile_seconds = time.perf_counter() - started
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def inrkit_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.training_step(step)
        optimizer.step()

    step_seconds = _median_seconds(inrkit_step, repeats, dev)
    peak = _peak_memory(dev)
    profiles: dict[str, list[dict[str, Any]]] = {}
    if profile:
        profiles["inrkit"] = profile_top(inrkit_step, dev)

    naive_seconds = ensemble_seconds = ensemble_compiled_seconds = None
    ensemble_compiled_error: str | None = None
    if naive:
        nets = [naive_siren(width, layers).to(dev) for _ in range(items)]
        naive_opt = torch.optim.Adam([p for n in nets for p in n.parameters()], lr=1e-4)
        coords = grid((size, size), device=dev)
        targets = list(points.chunk_targets(slice(0, points.points)))

        def naive_step() -> None:
            naive_opt.zero_grad(set_to_none=True)
            for net, target in zip(nets, targets, strict=True):
                ((net(coords) - target) ** 2).mean().backward()
            naive_opt.step()

        naive_seconds = _median_seconds(naive_step, repeats, dev)
        ensemble = ensemble_step(nets, coords, torch.stack(targets))[0]
        ensemble_seconds = _median_seconds(ensemble, repeats, dev)
        try:
            with compile_errors(True):
                compiled_ensemble = ensemble_step(nets, coords, torch.stack(targets), compiled=True)[0]
                compiled_ensemble()  # compiles
                ensemble_compiled_seconds = _median_seconds(compiled_ensemble, repeats, dev)
        except Exception as exc:  # noqa: BLE001 - a reference that cannot compile here is reported, not fatal
            ensemble_compiled_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        if profile:
            profiles["naive"] = profile_top(naive_step, dev)
            profiles["torch.func"] = profile_top(ensemble, dev)

    gemm_rate, sine_rate = machine_rates(width, dev, precision=precision)
    flops, sines = step_work(model, items * size * size)
    floor = flops / gemm_rate + sines / sine_rate
    peak_rate, bandwidth = peak_gemm_rate(dev), copy_bandwidth(dev)
    moved = step_bytes(model, items * size * size)
    flop_floor, traffic_floor = flops / peak_rate, moved / bandwidth
    return {
        "items": items,
        "size": size,
        "width": width,
        "layers": layers,
        "sharing": sharing,
        "activation": activation,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "chunk_points": chunk,
        "compile": compile,
        "compile_seconds": compile_seconds,
        "precision": precision,
        "step_seconds": step_seconds,
        "naive_step_seconds": naive_seconds,
        "ratio_vs_naive": (naive_seconds / step_seconds) if naive_seconds else None,
        "ensemble_step_seconds": ensemble_seconds,
        "ratio_vs_ensemble": (ensemble_seconds / step_seconds) if ensemble_seconds else None,
        "ensemble_compiled_step_seconds": ensemble_compiled_seconds,
        "ratio_vs_ensemble_compiled": (ensemble_compiled_seconds / step_seconds) if ensemble_compiled_seconds else None,
        "ensemble_compiled_error": ensemble_compiled_error,
        "peak_gemm_flops_per_second": peak_rate,
        "copy_bytes_per_second": bandwidth,
        "step_bytes": moved,
        "bytes_per_point": moved / (items * size * size),
        "flop_floor_step_seconds": flop_floor,
        "traffic_floor_step_seconds": traffic_floor,
        "physical_floor_step_seconds": max(flop_floor, traffic_floor),
        "ratio_vs_physical_floor": step_seconds / max(flop_floor, traffic_floor),
        "floor_step_seconds": floor,
        "ratio_vs_floor": step_seconds / floor,
        "gemm_flops_per_second": gemm_rate,
        "sine_per_second": sine_rate,
        "step_matmul_flops": flops,
        "step_sine_evaluations": sines,
        "peak_memory_bytes": peak,
        "profile": profiles or None,
    }
