"""Speed switches: bf16 autocast, torch.compile and TF32 change speed, not what is trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import inrkit
from inrkit.config import TrainConfig
from inrkit.errors import ConfigError, TrainingError
from inrkit.interfaces import INRModel
from inrkit.training.points import PointSet
from inrkit.results import TrainResult
from inrkit.training.trainer import ChunkedStep, Trainer

SHAPES = [(12, 12), (12, 12), (8, 10)]


def _fit(steps: int = 8, **train: object) -> tuple[INRModel, list[dict]]:
    model, result = _train(steps, **train)
    return model, result.history


def _train(steps: int = 8, **train: object) -> tuple[INRModel, TrainResult]:
    rng = np.random.default_rng(0)
    arrays = [rng.random((*s, 3), dtype=np.float32) for s in SHAPES]
    model = inrkit.create_model(item_shapes=SHAPES, width=32, layers=4, seed=0)
    return model, Trainer(steps=steps, log_every=1, device="cpu", lr=1e-3, **train).fit(model, arrays)


def test_bf16_autocast_runs_only_hidden_products_in_bf16_and_tracks_fp32():
    model, history = _fit(precision="bf16")
    _, reference = _fit()
    assert not hasattr(model, "autocast_dtype")  # the trainer keeps its state to itself
    dtypes: dict[str, torch.dtype] = {}
    for name, layer in [*model.shared.items(), *model.items.items()]:
        layer.register_forward_hook(lambda mod, args, out, name=name: dtypes.__setitem__(name, out.dtype))
    coords = torch.rand(len(SHAPES), 7, 2) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(coords)
    assert out.dtype == torch.float32
    assert dtypes["first"] == dtypes["last"] == torch.float32
    assert dtypes["projection"] == dtypes["hidden2"] == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    for got, want in zip(history, reference, strict=True):
        assert got["psnr"] == pytest.approx(want["psnr"], abs=0.1)
    assert any(got["loss"] != want["loss"] for got, want in zip(history, reference, strict=True))  # bf16 did run


def test_bf16_is_refused_for_models_with_their_own_forward():
    rng = np.random.default_rng(0)
    points = PointSet.from_arrays([rng.random((*s, 3), dtype=np.float32) for s in SHAPES])
    model = inrkit.create_model(sharing="coinpp", item_shapes=SHAPES, width=8, layers=3, sharing_options={"latent_dim": 4})
    trainer = Trainer(TrainConfig(steps=2, precision="bf16", device="cpu"), lr=1e-3)
    with pytest.raises(ConfigError, match="train.precision='bf16': CoinppINR runs its own forward pass"):
        trainer.fit(model, points)


@pytest.mark.slow
def test_compiled_training_matches_eager_training():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    # small chunks: some run over every item, some past the smallest item's end (gathered rows)
    compiled, result = _train(steps=4, compile=True, chunk_points=50)
    history = result.history
    assert result.compile_seconds is not None and result.compile_seconds > 0  # reported apart from seconds
    assert counters["stats"]["unique_graphs"] >= 1  # the training loop did run compiled code
    assert not hasattr(compiled, "compiled_forward")  # the model is left as it was: evaluation runs eagerly
    eager, reference = _fit(steps=4, chunk_points=50)
    for got, want in zip(history, reference, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)
    for (name, a), b in zip(compiled.state_dict().items(), eager.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_a_compile_failure_is_one_training_error(monkeypatch: pytest.MonkeyPatch):
    from torch._dynamo.exc import TorchRuntimeError

    def broken_compile(model: torch.nn.Module, dynamic: bool | None = None):  # type: ignore[no-untyped-def]
        def forward(*args: object, **kwargs: object) -> torch.Tensor:
            raise TorchRuntimeError("no C++ compiler found\nmore detail")

        return forward

    monkeypatch.setattr("inrkit.training.trainer.compile_forward", broken_compile)
    with pytest.raises(TrainingError, match=r"torch.compile failed \(TorchRuntimeError: no C\+\+ compiler found\); run without train.compile"):
        _fit(compile=True)


def test_precision_and_compile_are_cli_flags_and_config_keys():
    from inrkit.cli.options import build_config_dict

    data = build_config_dict(None, {"precision": "bf16", "compile": True}, ["train.tf32=false"])
    config = inrkit.as_config(data)
    assert (config.train.precision, config.train.compile, config.train.tf32) == ("bf16", True, False)
    with pytest.raises(ConfigError, match="train.precision"):
        inrkit.as_config({"train": {"precision": "fp8"}})


@pytest.mark.cuda
def test_tf32_setting_is_applied_in_the_block_and_restored_after():
    from inrkit.training.perf import matmul_precision

    before = torch.backends.cuda.matmul.allow_tf32
    with matmul_precision(torch.device("cuda"), tf32=True):
        assert torch.backends.cuda.matmul.allow_tf32
    with matmul_precision(torch.device("cuda"), tf32=False):
        assert not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32 == before
    with matmul_precision(torch.device("cpu"), tf32=True):  # the CPU is left alone
        assert torch.backends.cuda.matmul.allow_tf32 == before


@pytest.mark.cuda
@pytest.mark.parametrize("shapes", [[(32, 32)] * 3, [(32, 32), (20, 24), (9, 40)]], ids=["same-size", "mixed-sizes"])
def test_a_cuda_training_step_never_waits_for_the_device(shapes: list[tuple[int, int]]):
    rng = np.random.default_rng(0)
    device = torch.device("cuda")
    points = PointSet.from_arrays([rng.random((*s, 3), dtype=np.float32) for s in shapes]).to(device)
    model = inrkit.create_model(item_shapes=shapes, width=32, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    chunks = points.chunks(100)
    ChunkedStep(model, points, chunks).accumulate()  # warm-up outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        optimizer.zero_grad(set_to_none=True)
        ChunkedStep(model, points, chunks).accumulate()
        optimizer.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_compile_auto_is_the_default_and_short_fits_stay_eager():
    assert TrainConfig().compile == "auto"
    _, result = _train(steps=8)
    assert result.compiled is False and result.compile_reason.startswith("auto: eager")
    assert "would save about" in result.compile_reason and result.compile_seconds is None


@pytest.mark.parametrize(
    ("setting", "fragment"), [(False, "train.compile=false"), ("auto", "2 step(s) cannot repay")]
)
def test_compile_plans_say_why(setting, fragment: str):
    _, result = _train(steps=2, compile=setting)
    assert result.compiled is False and fragment in result.compile_reason


def test_compile_auto_without_a_compiler_stays_eager(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("inrkit.training.perf.shutil.which", lambda name: None)
    _, result = _train(steps=4)
    assert result.compiled is False and result.compile_reason == "auto: no C++ compiler on PATH"


def test_compile_auto_compiles_when_it_pays_and_a_failure_falls_back(monkeypatch: pytest.MonkeyPatch):
    """With the expected compile time at zero every fit repays it: "auto" compiles from the step
    after the timed ones; a failing compilation is a warning, and the fit ends eagerly."""
    from torch._dynamo.exc import TorchRuntimeError

    monkeypatch.setattr("inrkit.training.perf.EXPECTED_COMPILE_SECONDS", {"cpu": 0.0, "cuda": 0.0})
    calls: list[int] = []

    def broken_compile(model: torch.nn.Module, dynamic: bool | None = None):  # type: ignore[no-untyped-def]
        def forward(*args: object, **kwargs: object) -> torch.Tensor:
            calls.append(1)
            raise TorchRuntimeError("no C++ compiler found")

        return forward

    monkeypatch.setattr("inrkit.training.trainer.compile_forward", broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*; training eagerly"):
        model, result = _train(steps=6)
    assert calls and result.compiled is False and "compilation failed" in result.compile_reason
    _, reference = _train(steps=6, compile=False)
    assert [h["loss"] for h in result.history] == [h["loss"] for h in reference.history]


@pytest.mark.slow
def test_compile_auto_compiles_from_the_third_step_when_it_pays(monkeypatch: pytest.MonkeyPatch):
    from torch._dynamo.utils import counters

    monkeypatch.setattr("inrkit.training.perf.EXPECTED_COMPILE_SECONDS", {"cpu": 0.0, "cuda": 0.0})
    counters.clear()
    _, result = _train(steps=5, chunk_points=50)
    assert result.compiled is True and result.compile_reason.startswith("auto: compiled")
    assert result.compile_seconds is not None and counters["stats"]["unique_graphs"] >= 1
    _, reference = _train(steps=5, chunk_points=50, compile=False)
    for got, want in zip(result.history, reference.history, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)


@pytest.mark.slow
def test_a_multi_chunk_fit_of_unequal_items_compiles_exactly_once():
    """One graph per fit: the chunks are made one shape (every item in each, the last padded), so
    dynamo compiles the forward once; with the old plan (an item leaving the last chunk, a shorter
    last chunk) it compiled twice."""
    from torch._dynamo.utils import counters

    shapes = [(12, 12), (12, 12), (12, 10)]
    rng = np.random.default_rng(0)
    arrays = [rng.random((*s, 3), dtype=np.float32) for s in shapes]
    model = inrkit.create_model(item_shapes=shapes, width=32, layers=4, seed=0)
    counters.clear()
    result = Trainer(steps=3, log_every=1, device="cpu", lr=1e-3, compile=True, chunk_points=50).fit(model, arrays)
    assert counters["stats"]["unique_graphs"] == 1 and counters["frames"]["ok"] == 1, dict(counters["stats"])
    eager_model = inrkit.create_model(item_shapes=shapes, width=32, layers=4, seed=0)
    reference = Trainer(steps=3, log_every=1, device="cpu", lr=1e-3, compile=False, chunk_points=50).fit(eager_model, arrays)
    for got, want in zip(result.history, reference.history, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)


def test_equal_chunks_give_the_same_gradients_as_the_plain_plan():
    shapes = [(12, 12), (12, 12), (12, 10)]
    rng = np.random.default_rng(0)
    points = PointSet.from_arrays([rng.random((*s, 3), dtype=np.float32) for s in shapes])
    plan = points.chunks(50)
    equal = points.equal_chunks(plan)
    assert equal is not None and len({sl.stop - sl.start for sl, _ in equal}) == 1
    assert all(items is None for _, items in equal) and equal[-1][0].stop >= points.points
    grads = []
    for chunks in (plan, equal):
        model = inrkit.create_model(item_shapes=shapes, width=16, layers=3, seed=0)
        ChunkedStep(model, points, chunks).accumulate()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    blocks = [(slice(0, 100), torch.tensor([0, 1])), (slice(0, 100), torch.tensor([2]))]
    assert points.equal_chunks(blocks) is None  # item blocks keep their plan
    lopsided = PointSet.from_arrays([rng.random((64, 64, 3), dtype=np.float32), rng.random((4, 4, 3), dtype=np.float32)])
    assert lopsided.equal_chunks(lopsided.chunks(500)) is None  # padding would cost more than it saves
