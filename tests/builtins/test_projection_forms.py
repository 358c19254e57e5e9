"""MINR's per-item projection in its other forms: low-rank (``U_i V_i``) and LoRA (``W + U_i V_i``).

Parameter counts by hand, the batched layer against a loop over items, row selection against
no selection, and a trained run of each form through decode, ``.inrz`` (with QAT) and encode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import inrkit
from inrkit.cli import main
from inrkit.interfaces import LayerDef
from inrkit.nn import LowRankBatchedLinear, count_parameters
from inrkit.plugins import get_registry

W, LAYERS, IN, OUT = 32, 4, 2, 3


def _model(sharing: dict, n_items: int = 3):
    options = {k: v for k, v in sharing.items() if k != "name"}
    return inrkit.create_model("siren", sharing["name"], n_items=n_items, width=W, layers=LAYERS, sharing_options=options)


@pytest.mark.parametrize(
    ("sharing", "rank", "shared_projection"),
    [({"name": "minr-lowrank", "rank": 4}, 4, False), ({"name": "minr", "projection": "lowrank"}, W // 4, False),
     ({"name": "minr-lora", "rank": 3}, 3, True), ({"name": "minr", "projection": "lora"}, W // 16, True)],
)
def test_parameter_counts_by_hand(sharing: dict, rank: int, shared_projection: bool):
    n = 3
    counts = count_parameters(_model(sharing, n))
    hidden = (LAYERS - 2) * (W * W + W)
    first, last, projection = IN * W + W, W * OUT + OUT, rank * 2 * W + W
    shared = hidden + (W * W + W if shared_projection else 0)
    assert (counts.shared, counts.per_item, counts.total) == (shared, first + projection + last, shared + n * (first + projection + last))
    full = count_parameters(_model({"name": "minr"}, n))
    assert counts.per_item < full.per_item


def test_full_and_true_build_the_same_model():
    torch.manual_seed(0)
    a = _model({"name": "minr", "projection": True}).state_dict()
    torch.manual_seed(0)
    b = _model({"name": "minr", "projection": "full"}).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_low_rank_layer_is_each_items_own_product_and_row_selection_changes_nothing():
    torch.manual_seed(0)
    layer = LowRankBatchedLinear(4, 6, 5, rank=2)
    x = torch.randn(4, 7, 6)
    out = layer(x, omega=3.0)
    for i in range(4):
        expected = 3.0 * (x[i] @ layer.u[i] @ layer.v[i] + layer.bias[i])
        torch.testing.assert_close(out[i], expected)
    items = torch.tensor([2, 0])
    direct = layer(x[:2], items)
    direct.square().sum().backward()
    grads = [p.grad.clone() for p in (layer.u, layer.v, layer.bias)]
    layer.zero_grad(set_to_none=True)
    with layer.gathered(items):
        gathered = layer(x[:2], items)
        gathered.square().sum().backward()
    torch.testing.assert_close(gathered, direct)
    for p, g in zip((layer.u, layer.v, layer.bias), grads, strict=True):
        torch.testing.assert_close(p.grad, g)
    one = layer(x[1:2], torch.tensor([3]))  # one item: a plain 2-d product
    torch.testing.assert_close(one[0], x[1] @ layer.u[3] @ layer.v[3] + layer.bias[3])


@pytest.mark.parametrize("activation", ["siren", "wire"])
def test_the_low_rank_weight_has_the_spread_of_the_activations_own(activation: str):
    act = get_registry().get("activation", activation)({})
    dtype = act.layer_dtype("hidden")
    layer = LayerDef("projection", 128, 128, "hidden", shared=False, projection=True, rank=8)
    torch.manual_seed(0)
    low = LowRankBatchedLinear(2, 128, 128, 8, dtype=dtype)
    low.init_(act, layer)
    reference = torch.empty(1, 128, 128, dtype=dtype)
    act.init_layer_(reference, torch.empty(1, 128, dtype=dtype), layer)
    assert float(low.weight.detach().std()) == pytest.approx(float(reference.std()), rel=0.1)


def test_lora_items_start_from_the_shared_projection_and_move_apart():
    model = _model({"name": "minr-lora", "rank": 2})
    assert "projection" in model.shared and "projection" in model.items
    assert torch.count_nonzero(model.items["projection"].weight) == 0
    assert torch.count_nonzero(model.items["projection"].bias) == 0


@pytest.mark.parametrize("sharing", ["minr-lowrank", "minr-lora"])
def test_a_run_of_each_form_decodes_compresses_and_encodes(sharing: str, image_dir: Path, tmp_path: Path):
    config = {"sharing": {"name": sharing}, "model": {"width": W, "layers": LAYERS}, "train": {"steps": 30, "lr": 1e-3}}
    result = inrkit.fit(config, data=[str(image_dir)], out=tmp_path / "run")
    run = inrkit.load(tmp_path / "run")
    np.testing.assert_allclose(run.decode(2), result.reconstructions[2], atol=1e-5)
    packed = inrkit.compress(tmp_path / "run", tmp_path / "r.inrz", bits=12, qat_steps=5)
    assert packed.psnr_after > packed.psnr_before - 0.1  # 12 bits, then QAT trains on
    assert inrkit.decode(tmp_path / "r.inrz", 1).shape == result.reconstructions[1].shape
    encoded = inrkit.encode(tmp_path / "run", [str(image_dir)], out=tmp_path / "enc", train={"steps": 30}, init="mean")
    assert encoded.metrics is not None and encoded.metrics.psnr_mean > result.metrics.history[0].psnr
    trained = inrkit.load(tmp_path / "run").model()
    for name, tensor in trained.shared.state_dict().items():  # encode froze the shared layers
        assert torch.equal(encoded.model.shared.state_dict()[name], tensor), name


def test_a_rank_that_saves_nothing_is_one_clear_error(image_dir: Path, tmp_path: Path):
    result = CliRunner().invoke(main, [
        "run", "--data", str(image_dir), "--sharing", "minr", "--set", "sharing.projection=lowrank",
        "--set", "sharing.rank=16", "--width", "32", "--steps", "1", "--out", str(tmp_path / "r"),
    ])
    assert result.exit_code != 0 and "sharing.rank=16" in result.output and "rank below 16" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


def test_a_budget_search_may_try_tiny_widths():
    # front's width search builds width 1 and 2: the default rank is 1 there, never NaN weights
    for width in (1, 2):
        model = inrkit.create_model("siren", "minr-lowrank", n_items=2, width=width, layers=3)
        assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(inrkit.errors.ConfigError, match="sharing.rank=2"):
        inrkit.create_model("siren", "minr-lowrank", n_items=2, width=4, layers=3, sharing_options={"rank": 2})
