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
