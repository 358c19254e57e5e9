"""The batched per-item linear layer is exactly N separate ``nn.Linear`` layers."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from inrkit.coords import grid
from inrkit.nn import BatchedLinear, Linear


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 5),
    points=st.integers(1, 17),
    fan_in=st.integers(1, 9),
    fan_out=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_batched_linear_equals_separate_linears(n, points, fan_in, fan_out, seed):
    torch.manual_seed(seed)
    linears = [nn.Linear(fan_in, fan_out).double() for _ in range(n)]
    batched = BatchedLinear.from_linears(linears)
    x = torch.randn(n, points, fan_in, dtype=torch.float64, requires_grad=True)
    out = batched(x)
    expected = torch.stack([lin(x[i]) for i, lin in enumerate(linears)])
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)

    # Gradients reach the same places: item i's loss only touches slice i.
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    ref = sum((lin(x[i].detach()) * weights[i]).sum() for i, lin in enumerate(linears))
    ref.backward()
    for i, lin in enumerate(linears):
        torch.testing.assert_close(batched.weight.grad[i], lin.weight.grad.t())
        torch.testing.assert_close(batched.bias.grad[i], lin.bias.grad)


def test_batched_linear_rejects_wrong_item_count():
    layer = BatchedLinear(3, 2, 4)
    try:
        layer(torch.zeros(2, 5, 2))
    except ValueError as exc:
        assert "N=3" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected ValueError")


def test_shared_linear_matches_nn_linear():
    torch.manual_seed(0)
    ref = nn.Linear(6, 4)
    layer = Linear(6, 4)
    with torch.no_grad():
        layer.weight.copy_(ref.weight.t())
        layer.bias.copy_(ref.bias)
    x = torch.randn(3, 7, 6)
    torch.testing.assert_close(layer(x), ref(x))


def test_grid_coords_are_pixel_centres_in_unit_square():
    c = grid((2, 4))
    assert c.shape == (8, 2)
    assert torch.allclose(c[0], torch.tensor([-0.5, -0.75]))
    assert torch.allclose(c[-1], torch.tensor([0.5, 0.75]))
    assert c.min() > -1 and c.max() < 1


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 4), points=st.integers(1, 13), fan_in=st.integers(1, 9), omega=st.floats(0.5, 40), seed=st.integers(0, 2**16))
def test_omega_in_the_product_equals_omega_times_the_product(n, points, fan_in, omega, seed):
    """``affine(..., omega)`` folds omega into the GEMM's alpha/beta, forward and backward."""
    from inrkit.nn import affine

    torch.manual_seed(seed)
    for batched in (False, True):
        x = torch.randn(*((n,) if batched else ()), points, fan_in, dtype=torch.float64, requires_grad=True)
        w = torch.randn(*((n,) if batched else ()), fan_in, 7, dtype=torch.float64, requires_grad=True)
        b = torch.randn(*((n, 1) if batched else ()), 7, dtype=torch.float64, requires_grad=True)
        got = affine(x, w, b, omega)
        grads = torch.autograd.grad(got.sin().sum(), (x, w, b))
        expected = omega * ((x @ w) + b)
        wanted = torch.autograd.grad(expected.sin().sum(), (x, w, b))
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        for g, e in zip(grads, wanted, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_the_lean_path_trains_like_the_plain_one():
    """A SIREN-family MINR model with omega folded into its products (the default) gives the
    forward pass and gradients of the same model computing ``sin(omega * z)`` apart."""
    from inrkit.factory import build_model
    from inrkit.interfaces import ModelSpec
    from inrkit.plugins import get_registry

    registry = get_registry()
    for activation in ("siren", "finer", "gauss"):
        for sharing in ("minr", "separate"):
            torch.manual_seed(0)
            spec = ModelSpec(in_dim=2, out_dim=3, width=32, layers=5, item_shapes=((8, 8),) * 3)
            model = build_model(registry.create("activation", activation), registry.create("sharing", sharing), spec)
            assert any(f is not None for f in model.scaled_forms.values()), (activation, sharing)
            coords = torch.rand(3, 40, 2) * 2 - 1
            lean = model(coords)
            lean_grads = torch.autograd.grad(lean.square().mean(), list(model.parameters()))
            model.__dict__["scaled_forms"] = dict.fromkeys(model.scaled_forms)  # the plain path
            plain = model(coords)
            plain_grads = torch.autograd.grad(plain.square().mean(), list(model.parameters()))
            torch.testing.assert_close(lean, plain, rtol=1e-4, atol=1e-5)
            for a, b in zip(lean_grads, plain_grads, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_strategies_that_modulate_keep_the_plain_path():
    from inrkit.nn import MultiINR

    class Modulated(MultiINR):
        def modulate(self, layer, z, items):
            return z + 1.0

    from inrkit.interfaces import ModelSpec
    from inrkit.nn import mlp_layer_defs
    from inrkit.plugins import get_registry

    spec = ModelSpec(in_dim=2, out_dim=3, width=16, layers=3, item_shapes=((4, 4),))
    siren = get_registry().create("activation", "siren")
    model = Modulated(siren, spec, mlp_layer_defs(spec, siren, [False]))
    assert all(f is None for f in model.scaled_forms.values())
