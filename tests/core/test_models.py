"""Model structure and exact parameter counts of the sharing strategies."""

from __future__ import annotations

import math

import pytest
import torch

import inrkit
from inrkit import api
from inrkit.config import ResolvedRun
from inrkit.errors import ConfigError
from inrkit.factory import build_model, run_spec
from inrkit.interfaces import ModelSpec
from inrkit.nn import MultiINR, count_parameters
from inrkit.plugins import get_registry


def counts(sharing: str, n: int, width: int = 256, layers: int = 5, **options) -> dict[str, int]:
    config = {"sharing": {"name": sharing, **options}, "model": {"width": width, "layers": layers}}
    return api.parameter_counts(config, n_items=n).as_dict()


def test_paper_parameter_counts():
    assert counts("minr", 4) == {"total": 466_700, "shared": 197_376, "per_item": 67_331}
    assert counts("separate", 4) == {"total": 795_660, "shared": 0, "per_item": 198_915}
    assert counts("minr", 100)["total"] == 6_930_476
    assert counts("minr", 40)["total"] == 2_890_616
    assert counts("separate", 1)["total"] == 198_915


def test_minr_ablation_counts():
    assert counts("minr", 4, shared_layers=[3, 4])["total"] == 664_076
    assert counts("minr", 4, shared_layers=[4])["total"] == 861_452
    assert counts("minr", 4, projection=False)["total"] == 466_700 - 4 * 65_792


def test_minr_rejects_layers_that_do_not_exist():
    with pytest.raises(ConfigError, match=r"layer\(s\) \[5\] do not exist.*2\.\.4"):
        counts("minr", 4, shared_layers=[2, 5])
    with pytest.raises(ConfigError, match="more than once"):
        counts("minr", 4, shared_layers=[2, 2])


def build(sharing: str, n: int = 3, width: int = 16, layers: int = 5, **options) -> MultiINR:
    return inrkit.create_model(sharing=sharing, item_shapes=[(8, 8)] * n, width=width, layers=layers, sharing_options=options)


def test_minr_structure_shares_only_hidden_layers():
    model = build("minr", n=3)
    assert [d.name for d in model.layer_defs] == ["first", "projection", "hidden2", "hidden3", "hidden4", "last"]
    assert set(model.shared.keys()) == {"hidden2", "hidden3", "hidden4"}
    assert set(model.items.keys()) == {"first", "projection", "last"}
    for name, p in model.items.named_parameters():
        assert p.shape[0] == 3, name
    for name, p in model.shared.named_parameters():
        assert p.shape[0] != 3 or p.dim() == 1, name


def test_minr_ablation_structure():
    model = build("minr", shared_layers=[3], projection=False)
    assert [d.name for d in model.layer_defs] == ["first", "hidden2", "hidden3", "hidden4", "last"]
    assert set(model.shared.keys()) == {"hidden3"}


def test_separate_items_are_independent():
    torch.manual_seed(0)
    model = build("separate", n=3)
    assert count_parameters(model).shared == 0
    coords = torch.rand(3, 10, 2) * 2 - 1
    model(coords)[1].sum().backward()
    for name, p in model.items.named_parameters():
        assert p.grad[1].abs().sum() > 0, name
        assert p.grad[0].abs().sum() == 0 and p.grad[2].abs().sum() == 0, name


def test_minr_shared_layers_receive_gradient_from_every_item():
    torch.manual_seed(0)
    model = build("minr", n=2)
    out = model(torch.rand(2, 10, 2) * 2 - 1)
    out[0].sum().backward()
    g0 = model.shared["hidden3"].weight.grad.clone()
    assert g0.abs().sum() > 0
    assert model.items["first"].weight.grad[1].abs().sum() == 0


@pytest.mark.parametrize("sharing", get_registry().names("sharing"))
@pytest.mark.parametrize("activation", get_registry().names("activation"))
def test_every_strategy_builds_and_counts_exactly(sharing, activation):
    config = api.as_config({"activation": {"name": activation}, "sharing": {"name": sharing}, "model": {"width": 8, "layers": 4}})
    resolved = ResolvedRun(config)
    model = inrkit.create_model(resolved.activation, resolved.sharing, item_shapes=[(5, 6)] * 2, width=8, layers=4)
    out = model(torch.zeros(2, 7, 2))
    assert out.shape == (2, 7, 3) and torch.isfinite(out).all()
    numel = sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())  # complex counts 2
    c = count_parameters(model)
    assert c.total == numel == c.shared + 2 * c.per_item
    # A one-item model for item 1 holds exactly the shared tensors and one item's tensors.
    spec = run_spec(config, 2, [(5, 6)], 3, item_indices=(1,), run_item_shapes=((5, 6), (5, 6)))
    single = build_model(resolved.activation, resolved.sharing, spec)
    assert count_parameters(single).total == c.shared + c.per_item


def test_siren_initialisation_bounds():
    from inrkit_activations.siren import Siren

    act = Siren()
    for position, fan_in, bound in [("first", 2, 1 / 2), ("hidden", 256, math.sqrt(6 / 256) / 30), ("last", 256, math.sqrt(6 / 256) / 30)]:
        w = torch.empty(4, fan_in, 256)
        b = torch.empty(4, 256)
        act.init_(w, b, position)
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
        assert b.abs().max() <= 1 / math.sqrt(fan_in)
        assert abs(w.mean().item()) < 0.05 * bound


def test_model_spec_defaults():
    spec = ModelSpec(in_dim=2, out_dim=3, width=4, layers=3, item_shapes=((2, 2), (3, 3)))
    assert spec.item_indices == (0, 1) and spec.total_items == 2 and spec.n_items == 2
