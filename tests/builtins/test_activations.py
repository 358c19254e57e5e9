"""Each backbone's formula against a direct float64 evaluation, and its initialisation bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import inrkit
from inrkit import api
from inrkit.plugins import get_registry

values = arrays(np.float64, st.integers(1, 40), elements=st.floats(-3, 3, allow_nan=False))
positive = st.floats(0.5, 60.0)


def activation(name: str, **options):
    return get_registry().get("activation", name)(options)


def apply(act, z: np.ndarray, position: str = "hidden") -> np.ndarray:
    return act.activate(torch.from_numpy(z), position).numpy()


@settings(max_examples=50, deadline=None)
@given(z=values, omega=positive)
def test_siren_formula(z, omega):
    np.testing.assert_allclose(apply(activation("siren", omega=omega), z), np.sin(omega * z), atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(z=values, omega=positive, first=positive)
def test_siren_first_layer_omega(z, omega, first):
    act = activation("siren", omega=omega, first_omega=first)
    np.testing.assert_allclose(apply(act, z, "first"), np.sin(first * z), atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(z=values, scale=positive)
def test_gauss_formula(z, scale):
    np.testing.assert_allclose(apply(activation("gauss", scale=scale), z), np.exp(-((scale * z) ** 2)), atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(z=values, omega=positive, scale=positive)
def test_wire_formula_real_and_complex_input(z, omega, scale):
    act = activation("wire", omega=omega, scale=scale)
    np.testing.assert_allclose(apply(act, z, "first"), np.exp(1j * omega * z - np.abs(scale * z) ** 2), atol=1e-12)
    zc = z + 0.5j * z[::-1]
    got = act.activate(torch.from_numpy(zc), "hidden").numpy()
    np.testing.assert_allclose(got, np.exp(1j * omega * zc - np.abs(scale * zc) ** 2), atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(z=values, omega=positive)
def test_finer_formula_and_scale_without_gradient(z, omega):
    act = activation("finer", omega=omega)
    np.testing.assert_allclose(apply(act, z), np.sin(omega * (np.abs(z) + 1) * z), atol=1e-8)
    t = torch.from_numpy(z).requires_grad_(True)
    act.activate(t, "hidden").sum().backward()
    # The scale |z| + 1 is a constant for autograd: d/dz = omega (|z| + 1) cos(omega (|z| + 1) z).
    scale = np.abs(z) + 1
    np.testing.assert_allclose(t.grad.numpy(), omega * scale * np.cos(omega * scale * z), rtol=1e-9, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(coords=arrays(np.float64, (5, 2), elements=st.floats(-1, 1)), frequencies=st.integers(0, 12), include=st.booleans())
def test_pemlp_encoding_and_relu(coords, frequencies, include):
    if frequencies == 0 and not include:
        with pytest.raises(ValueError, match="no input"):
            activation("pemlp", frequencies=0, include_input=False)
        return
    act = activation("pemlp", frequencies=frequencies, include_input=include)
    got = act.encode(torch.from_numpy(coords)).numpy()
    f = np.pi * 2.0 ** np.arange(frequencies)
    angles = (coords[..., None] * f).reshape(5, -1)
    expected = np.concatenate(([coords] if include else []) + [np.sin(angles), np.cos(angles)], axis=-1)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert got.shape[-1] == act.encoded_dim(2)
    np.testing.assert_array_equal(apply(act, coords.ravel()), np.maximum(coords.ravel(), 0))


REFERENCE_BOUNDS = {
    # (position, fan_in) -> (weight bound, bias bound), from each backbone's reference code.
    "siren": lambda pos, n: (1 / n if pos == "first" else math.sqrt(6 / n) / 30, 1 / math.sqrt(n)),
    "finer": lambda pos, n: (1 / n if pos == "first" else math.sqrt(6 / n) / 30, 1 / math.sqrt(n)),
    "gauss": lambda pos, n: (1 / math.sqrt(n), 1 / math.sqrt(n)),
    "wire": lambda pos, n: (1 / math.sqrt(n), 1 / math.sqrt(n)),
    "pemlp": lambda pos, n: (1 / math.sqrt(n), 1 / math.sqrt(n)),
}


@pytest.mark.parametrize("name", get_registry().names("activation"))
@settings(max_examples=20, deadline=None)
@given(position=st.sampled_from(["first", "hidden", "last"]), fan_in=st.integers(1, 300))
def test_initialisation_bounds_match_reference(name, position, fan_in):
    act = activation(name)
    assert act.init_bounds(position, fan_in) == pytest.approx(REFERENCE_BOUNDS[name](position, fan_in))
    weight = torch.empty(fan_in, 16, dtype=act.layer_dtype(position) or torch.float32)
    bias = torch.empty(16, dtype=weight.dtype)
    act.init_(weight, bias, position)
    w_bound, b_bound = act.init_bounds(position, fan_in)
    as_real = torch.view_as_real if weight.is_complex() else (lambda t: t)
    assert as_real(weight).abs().max() <= w_bound * (1 + 1e-6)
    assert as_real(bias).abs().max() <= b_bound * (1 + 1e-6)


@pytest.mark.parametrize("name", ["siren", "finer"])
@pytest.mark.parametrize("scale", [0.5, 2.0, 3.0])
def test_init_scale_multiplies_every_weight_bound_but_the_last(name, scale):
    """Yeom et al.'s weight scaling: first and hidden weights times the factor; biases and the last layer as SIREN."""
    plain, scaled = activation(name), activation(name, init_scale=scale)
    for position in ("first", "hidden", "last"):
        (w0, b0), (w1, b1) = plain.init_bounds(position, 64), scaled.init_bounds(position, 64)
        assert w1 == pytest.approx(w0 * (scale if position != "last" else 1.0)) and b1 == b0
    weight, bias = torch.empty(2, 512), torch.empty(512)
    scaled.init_(weight, bias, "first")
    assert 0.9 * scale / 2 < weight.abs().max() <= scale / 2  # U(±scale/fan_in), fan_in 2


def test_init_scale_1_is_the_reference_initialisation_exactly():
    default = inrkit.create_model(n_items=2, item_shapes=[(8, 8)] * 2, width=16, layers=4, seed=3)
    explicit = inrkit.create_model(activation=activation("siren", init_scale=1.0), n_items=2, item_shapes=[(8, 8)] * 2,
                                   width=16, layers=4, seed=3)
    for (name, a), (_, b) in zip(default.state_dict().items(), explicit.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("bad", ["0", "-1", "101", "x"])
def test_init_scale_out_of_range_is_one_clear_error(bad):
    from click.testing import CliRunner

    from inrkit.cli import main

    result = CliRunner().invoke(main, ["run", "--steps", "1", "--width", "8", "--set", f"activation.init_scale={bad}", "--no-progress"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "activation.init_scale" in result.output, result.output


def test_finer_first_bias_scale():
    act = activation("finer", first_bias_scale=5.0)
    weight, bias = torch.empty(2, 256), torch.empty(256)
    act.init_(weight, bias, "first")
    assert 4.0 < bias.abs().max() <= 5.0
    assert act.init_bounds("hidden", 256)[1] == pytest.approx(1 / 16)


def test_wire_is_complex_after_the_first_layer_and_counts_real_numbers():
    config = api.as_config({"activation": {"name": "wire"}, "sharing": {"name": "minr"}, "model": {"width": 256}})
    model = inrkit.create_model("wire", "minr", n_items=4, width=256)
    assert model.items["first"].weight.dtype == torch.float32
    assert model.items["projection"].weight.dtype == torch.complex64
    assert model.shared["hidden2"].weight.dtype == torch.complex64
    assert model.items["last"].weight.shape == (4, 181, 3)  # width 256 / sqrt(2)
    h = 181
    assert api.parameter_counts(config, n_items=4).as_dict() == {
        "total": 3 * 2 * (h * h + h) + 4 * ((2 * h + h) + 2 * (h * h + h) + 2 * (h * 3 + 3)),
        "shared": 3 * 2 * (h * h + h),
        "per_item": (2 * h + h) + 2 * (h * h + h) + 2 * (h * 3 + 3),
    }
    out = model(torch.zeros(4, 5, 2))
    assert out.dtype == torch.float32


def test_wire_checkpoint_round_trip(tmp_path, image_dir):
    config = {"activation": {"name": "wire"}, "model": {"width": 16, "layers": 3}, "train": {"steps": 3}}
    result = inrkit.fit(config, data=[str(image_dir)], out=tmp_path / "w")
    np.testing.assert_allclose(inrkit.load(result.run_dir).decode(1), result.reconstructions[1], atol=1e-5)
