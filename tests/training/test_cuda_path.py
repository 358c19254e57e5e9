"""The CUDA path, checked on the CPU where it can be (faked CUDA state, fake devices), and on a
GPU when one is present: process groups and their GPUs, TF32 flags, evaluation memory, chunks over
blocks of items, exact first layers, devices of saved runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import inrkit
from inrkit.training import distributed
from inrkit.errors import ConfigError
from inrkit.training.points import PointSet, activation_bytes_per_row
from inrkit.training.trainer import ChunkedStep, Trainer

TWO_GPUS = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")


@pytest.fixture
def fake_torchrun_with_gpus(monkeypatch: pytest.MonkeyPatch):
    """A process of a 2-process torchrun group on a machine with GPUs, the group already joined."""

    def setup(rank: int = 1, gpus: int = 2, visible: str | None = None) -> None:
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda: rank)
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)

    return setup


# -- bug 1: the device a group hands out is accepted when it comes back ----------------------------
def test_joining_again_with_the_process_gpu_is_accepted(fake_torchrun_with_gpus):
    fake_torchrun_with_gpus(rank=1)
    group, device = distributed.join(torch.device("cuda"))
    assert device == torch.device("cuda", 1) and group.world_size == 2
    again, same = distributed.join(device)  # a second fit in the process (compare, encode, a script)
    assert same == device and again.rank == 1
    with pytest.raises(ConfigError, match="names one GPU for all 2 processes"):
        distributed.join(torch.device("cuda", 0))  # another rank's GPU


def test_one_visible_gpu_per_process_is_that_process_gpu(fake_torchrun_with_gpus):
    fake_torchrun_with_gpus(rank=1, gpus=1, visible="3")
    assert distributed.join(torch.device("cuda"))[1] == torch.device("cuda", 0)
    fake_torchrun_with_gpus(rank=1, gpus=1, visible=None)
    with pytest.raises(ConfigError, match="process 1 has no GPU of its own"):
        distributed.join(torch.device("cuda"))


def test_a_broadcast_failure_reaches_every_rank_whatever_the_error(monkeypatch: pytest.MonkeyPatch):
    sent: list = []
    monkeypatch.setattr(torch.distributed, "broadcast_object_list", lambda payload, src: sent.append(payload[0]))
    monkeypatch.setattr(distributed, "_failed", False)
    main = distributed.TorchDistributed(rank=0, world_size=2, local_rank=0, owns_group=False)
    with pytest.raises(OSError, match="disk full"):
        main.on_main(lambda: (_ for _ in ()).throw(OSError("disk full")))
    ok, value = sent[-1]
    assert not ok and "rank 0 failed: OSError: disk full" in str(value)
    assert distributed._failed  # exiting skips the barrier the peers may never reach


@pytest.mark.slow
def test_an_error_on_rank_0_ends_every_process_promptly(tmp_path: Path):
    worker = tmp_path / "worker.py"
    worker.write_text(
        "import torch\nfrom inrkit.training import distributed\n"
        "group, _ = distributed.join(torch.device('cpu'))\n"
        "group.on_main(lambda: (_ for _ in ()).throw(OSError('disk full')))\n"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode != 0
    assert time.perf_counter() - started < 120  # not the group's 30-minute timeout
    assert "OSError: disk full" in done.stderr and "rank 0 failed: OSError: disk full" in done.stderr


# -- bug 2: TF32 set so that every flag can be read -------------------------------------------------
def test_tf32_block_keeps_every_flag_readable_and_restores_it():
    from inrkit.training.perf import matmul_precision, tf32_enabled

    matmul = torch.backends.cuda.matmul
    matmul.fp32_precision = "ieee"  # a user who set only the newer API before
    try:
        with matmul_precision(torch.device("cuda"), tf32=True):  # only device.type is consulted
            assert matmul.allow_tf32 and torch.get_float32_matmul_precision() == "high"
            assert matmul.fp32_precision == "tf32"
        assert not tf32_enabled() and torch.get_float32_matmul_precision() == "highest"
        with matmul_precision(torch.device("cpu"), tf32=True):  # the CPU is left alone
            assert not matmul.allow_tf32
    finally:
        matmul.allow_tf32 = False


# -- 4: evaluation keeps the targets where they are --------------------------------------------------
def test_rendering_on_another_device_moves_chunks_not_the_targets():
    from inrkit.training.points import render_points

    rng = np.random.default_rng(0)
    points = PointSet.from_arrays([rng.random((20, 12, 3), dtype=np.float32) for _ in range(3)])
    seen: list[tuple[torch.device, tuple[int, ...]]] = []

    class Probe:
        def eval(self) -> None:
            pass

        def __call__(self, coords: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
            seen.append((coords.device, tuple(coords.shape)))
            return torch.zeros(coords.shape[0], coords.shape[1], 3)

    out = render_points(Probe(), points, chunk_rows=60, device=torch.device("meta"))  # type: ignore[arg-type]
    assert out.device == points.targets.device and out.shape == points.targets.shape
    assert all(device.type == "meta" for device, _ in seen)  # only coordinates travelled
    assert max(shape[0] * shape[1] for _, shape in seen) <= 60  # chunk by chunk


def test_evaluate_passes_cpu_targets_and_the_model_device(monkeypatch: pytest.MonkeyPatch):
    from inrkit.training import evaluate as evaluation
    from inrkit.plugins import get_registry

    calls = []

    def fake_render(model, points, chunk_rows, device):  # type: ignore[no-untyped-def]
        calls.append((points.targets.device.type, device))
        return torch.zeros_like(points.targets)

    monkeypatch.setattr(evaluation, "render_points", fake_render)
    monkeypatch.setattr(evaluation, "auto_chunk_rows", lambda device: 1024)
    signal = get_registry().create("signal", "image")
    items = signal.load(["sample:astronaut"])
    evaluation.evaluate(object(), items, signal, torch.device("cuda"))  # type: ignore[arg-type]
    assert calls == [("cpu", torch.device("cuda"))]


# -- 5: chunks over blocks of items -------------------------------------------------------------------
@pytest.mark.parametrize("rows", [40, 100, 1000])
def test_item_block_chunks_cover_every_point_once_and_give_the_full_gradient(rows: int):
    rng = np.random.default_rng(1)
    shapes = [(6, 5), (4, 7), (6, 5), (3, 3), (5, 6)]
    arrays = [rng.random((*s, 3), dtype=np.float32) for s in shapes]
    points = PointSet.from_arrays(arrays)
    chunks = points.item_block_chunks(rows)
    covered = np.zeros((points.n_items, points.points), dtype=int)
    for sl, items in chunks:
        rows_here = range(points.n_items) if items is None else items.tolist()
        for i in rows_here:
            covered[i, sl.start : min(sl.stop, points.counts[i])] += 1
        assert len(rows_here) * (sl.stop - sl.start) <= max(rows, points.points)
    for i, count in enumerate(points.counts):
        assert (covered[i, :count] == 1).all() and (covered[i, count:] == 0).all()
    model = inrkit.create_model(item_shapes=shapes, width=8, layers=4, seed=0)

    def grads(plan: list) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        ChunkedStep(model, points, plan).accumulate()
        return [p.grad.clone() for p in model.parameters()]

    for a, b in zip(grads(chunks), grads(points.chunks(points.points)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_the_trainer_chunks_over_item_blocks_on_a_gpu_sized_to_its_memory(monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(2)
    points = PointSet.from_arrays([rng.random((64, 64, 3), dtype=np.float32) for _ in range(40)])
    model = inrkit.create_model(n_items=40, width=64, layers=5, seed=0)
    trainer = Trainer(device="cpu")
    assert trainer.plan_chunks(points, model) == points.chunks(8192 // 40)  # the CPU plan is unchanged
    trainer.device = torch.device("cuda")
    per_row = activation_bytes_per_row(model)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * per_row * 40_960, 80 << 30))
    plan = trainer.plan_chunks(points, model)
    assert max(len(items) * (sl.stop - sl.start) for sl, items in plan) <= 40_960  # half the free memory
    assert {tuple(items.tolist()) for _, items in plan} == {tuple(range(k, k + 10)) for k in range(0, 40, 10)}
    wire = inrkit.create_model("wire", "minr", n_items=40, width=64, layers=5)
    assert activation_bytes_per_row(wire) > activation_bytes_per_row(model)  # complex units count twice


def test_the_cpu_chunks_over_item_blocks_once_items_are_many():
    """200 items of 8x8: a chunk of the usual kind would hold 40 points of each (fewer than
    MIN_CPU_CHUNK_POINTS), so every chunk would read every item's weights; blocks of whole items
    read each item's weights once per step."""
    from inrkit.training.trainer import MIN_CPU_CHUNK_POINTS

    points = PointSet.from_arrays([np.full((8, 8, 3), i / 255, dtype=np.float32) for i in range(200)])
    model = inrkit.create_model(n_items=200, width=16, layers=3, seed=0)
    plan = Trainer(device="cpu").plan_chunks(points, model)
    assert 8192 // 200 < MIN_CPU_CHUNK_POINTS
    assert [(sl, items.tolist()) for sl, items in plan] == [(sl, items.tolist()) for sl, items in points.item_block_chunks(8192)]
    seen = [i for _, items in plan for i in items.tolist()]
    assert sorted(seen) == list(range(200)), "every item once, whole"


# -- 7: the first layer stays exact under TF32 --------------------------------------------------------
def test_small_fan_in_layers_as_multiply_adds_equal_the_matrix_product():
    from inrkit.nn import _exact_small_fan_in

    torch.manual_seed(0)
    x, weight, bias = torch.rand(3, 50, 2), torch.randn(3, 2, 16), torch.randn(3, 16)
    want = torch.baddbmm(bias.unsqueeze(1), x, weight)
    torch.testing.assert_close(_exact_small_fan_in(x, weight.unsqueeze(1), bias.unsqueeze(1)), want)
    flat_w, flat_b = torch.randn(2, 16), torch.randn(16)
    torch.testing.assert_close(_exact_small_fan_in(x, flat_w, flat_b), x @ flat_w + flat_b)


# -- 6: compile where it helps -------------------------------------------------------------------------
def test_compile_is_skipped_for_complex_networks_with_a_warning():
    images = [np.random.default_rng(0).random((8, 8, 3), dtype=np.float32)]
    model = inrkit.create_model("wire", "minr", n_items=1, width=8, layers=3, seed=0)
    with pytest.warns(RuntimeWarning, match="train.compile is skipped: the network has complex-valued layers"):
        result = Trainer(steps=2, compile=True, device="cpu").fit(model, images)
    assert result.compile_seconds is None


# -- 9: a run trained on a GPU continues on a machine without one --------------------------------------
def test_resume_and_encode_of_a_run_from_a_missing_device_use_this_machine(image_dir: Path, tmp_path: Path):
    from safetensors.torch import load_file, save_file

    from inrkit import files
    from inrkit.runs import checkpoint, layout

    config = {"model": {"width": 8, "layers": 3}, "train": {"steps": 4, "checkpoint_every": 2, "device": "cpu"}}
    run = tmp_path / "r"
    inrkit.fit(config, data=[str(image_dir)], out=run)
    # As if trained on a GPU this machine does not have.
    path = run / layout.CHECKPOINT_FILE
    meta = checkpoint.read_metadata(path)
    meta["config"]["train"]["device"] = "cuda:7"
    save_file(load_file(path), str(path), metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    files.write_checksums(run, layout.checksummed_files(run))  # the folder as that machine wrote it
    notes: list[str] = []
    encoded = inrkit.encode(run, [str(image_dir)], save=False, train={"steps": 2}, on_note=notes.append)
    assert encoded.metrics is not None and notes and "'cuda:7', which this machine does not have" in notes[0]
    # Resume: a snapshot of an unfinished run whose config names the missing GPU.
    unfinished = tmp_path / "u"
    with pytest.raises(inrkit.errors.TrainingInterrupted):
        inrkit.fit(config, data=[str(image_dir)], out=unfinished, callbacks=[_StopAt(2)])
    saved = json.loads((unfinished / "config.json").read_text())
    saved["train"]["device"] = "cuda:7"
    (unfinished / "config.json").write_text(json.dumps(saved))
    notes.clear()
    resumed = inrkit.fit(resume=unfinished, on_note=notes.append)
    assert resumed.metrics is not None and resumed.metrics.steps == 4 and "cuda:7" in notes[0]


class _StopAt(inrkit.Callback):
    """Presses Ctrl-C after a given step."""

    name = "stop-at"

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def on_step_end(self, context, log):  # type: ignore[no-untyped-def]
        if log.step == self.step:
            raise KeyboardInterrupt


# -- on a GPU ---------------------------------------------------------------------------------------------
@pytest.mark.cuda
def test_gpu_matches_cpu_with_tf32_off_and_bf16_and_compile_train(image_dir: Path):
    config = {"model": {"width": 32, "layers": 4}, "train": {"steps": 20, "tf32": False, "log_every": 5}}
    cpu = inrkit.fit({**config, "train": {**config["train"], "device": "cpu"}}, data=[str(image_dir)], save=False)
    gpu = inrkit.fit({**config, "train": {**config["train"], "device": "cuda"}}, data=[str(image_dir)], save=False)
    assert gpu.metrics.psnr_mean == pytest.approx(cpu.metrics.psnr_mean, abs=0.05)
    for switches in ({"precision": "bf16"}, {"compile": True}):
        fast = inrkit.fit({**config, "train": {**config["train"], "device": "cuda", **switches}}, data=[str(image_dir)], save=False)
        assert fast.metrics.psnr_mean == pytest.approx(cpu.metrics.psnr_mean, abs=0.5), switches


@pytest.mark.cuda
def test_a_cuda_snapshot_resumes_on_the_cpu(image_dir: Path, tmp_path: Path):
    config = {"model": {"width": 16, "layers": 3}, "train": {"steps": 6, "checkpoint_every": 3, "device": "cuda"}}
    with pytest.raises(inrkit.errors.TrainingInterrupted):
        inrkit.fit(config, data=[str(image_dir)], out=tmp_path / "r", callbacks=[_StopAt(4)])
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    saved["train"]["device"] = "cpu"
    (tmp_path / "r" / "config.json").write_text(json.dumps(saved))
    resumed = inrkit.fit(resume=tmp_path / "r")
    assert resumed.metrics.steps == 6 and resumed.metrics.device == "cpu"


@TWO_GPUS
@pytest.mark.cuda
@pytest.mark.slow
def test_two_gpus_with_nccl_train_what_one_trains(image_dir: Path, tmp_path: Path):
    args = ["run", str(image_dir), "--width", "32", "--steps", "10", "--no-plots", "--json"]
    one = subprocess.run([sys.executable, "-m", "inrkit", *args, "--out", str(tmp_path / "one")], capture_output=True, text=True, check=False)
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "inrkit", *args,
         "--out", str(tmp_path / "two")], capture_output=True, text=True, check=False,
    )
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    m1, m2 = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", "two"))
    assert m2["processes"] == 2 and m2["psnr_mean"] == pytest.approx(m1["psnr_mean"], abs=0.1)


def test_a_step_that_fits_in_the_cards_memory_is_one_chunk(monkeypatch: pytest.MonkeyPatch):
    """Kodak-4's shape at width 256 (about 32 GB of activations) on a card with 139 GB free: one
    chunk, not the eight a fixed row cap cut it into."""
    from inrkit.training.points import auto_chunk_rows

    model = inrkit.create_model(n_items=4, width=256, layers=5, seed=0)
    per_row = activation_bytes_per_row(model)
    rows = 4 * 768 * 512
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (139 << 30, 141 << 30))
    assert auto_chunk_rows(torch.device("cuda"), per_row) >= rows
    points = PointSet.from_arrays([np.zeros((768, 512, 3), dtype=np.float32)] * 4)
    trainer = Trainer(device="cpu")
    trainer.device = torch.device("cuda")
    assert len(trainer.plan_chunks(points, model)) == 1
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 << 30, 80 << 30))  # a busy card
    assert len(trainer.plan_chunks(points, model)) > 1
