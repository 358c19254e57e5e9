"""The activation contract kit: checks every activation plugin must pass.

Subclass :class:`ActivationContract` in your test suite and name your activation; pytest then
runs every check below against it, through the same plugin registry ``inrkit run`` uses (so your
entry point must be installed, e.g. ``pip install -e .``)::

    from inrkit.testing import ActivationContract

    class TestSinc(ActivationContract):
        activation = "sinc"

inrkit's own suite runs the same class over every registered activation. The checks: it is
registered under its name; its options have defaults, validate and reject unknown keys; its
initialisation stays within :meth:`~inrkit.interfaces.Activation.init_bounds`; forward and
backward are finite for the separate and minr strategies; a declared ``f(omega * z)`` form
(:meth:`~inrkit.interfaces.Activation.scaled_form`) equals the activation, gradients included; a short fit of two small images improves
PSNR well beyond the untrained network; outputs are float32; and all of it on CUDA when present.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from inrkit.factory import build_model
from inrkit.interfaces import Activation, LayerDef, ModelSpec, inr_model_gaps
from inrkit.plugins import PluginRegistry
from inrkit.testing._common import PluginContract, devices, write_test_images

#: Sharing strategies every activation must work with.
CORE_STRATEGIES = ("separate", "minr")
#: PSNR gain (dB) over the untrained network that the short fit must reach.
MIN_FIT_GAIN_DB = 5.0


class ActivationContract(PluginContract):
    """Checks every activation plugin must pass. Set ``activation`` to the registered name."""

    kind: ClassVar[str] = "activation"
    #: The activation's registered name.
    activation: ClassVar[str]

    @pytest.fixture
    def activation_name(self) -> str:
        return self.activation

    @pytest.fixture
    def plugin_name(self, activation_name: str) -> str:
        return activation_name

    @pytest.fixture
    def act(self, activation_name: str, plugin_registry: PluginRegistry) -> Activation:
        return plugin_registry.create("activation", activation_name)

    # -- registration and options ---------------------------------------------------------------
    def test_default_learning_rate_is_positive(self, act: Activation) -> None:
        assert type(act).default_lr > 0

    # -- initialisation ---------------------------------------------------------------------------
    @pytest.mark.parametrize("position", ["first", "hidden", "last"])
    def test_initialisation_within_bounds(self, act: Activation, position: str) -> None:
        torch.manual_seed(0)
        fan_in = 2 if position == "first" else 64
        dtype = act.layer_dtype(position) or torch.float32  # type: ignore[arg-type]
        weight = torch.empty(3, fan_in, 64, dtype=dtype)
        bias = torch.empty(3, 64, dtype=dtype)
        act.init_(weight, bias, position)  # type: ignore[arg-type]
        for name, t in (("weight", weight), ("bias", bias)):
            parts = torch.view_as_real(t) if t.is_complex() else t
            assert torch.isfinite(parts).all(), f"{name} has non-finite values"
            assert parts.std() > 0, f"{name} is constant"
        bounds = act.init_bounds(position, fan_in)  # type: ignore[arg-type]
        if bounds is None:
            return
        for name, t, bound in (("weight", weight, bounds[0]), ("bias", bias, bounds[1])):
            parts = torch.view_as_real(t) if t.is_complex() else t
            top = parts.abs().max().item()
            assert top <= bound * (1 + 1e-6), f"{position} {name}: |value| {top} exceeds bound {bound}"
            assert top >= 0.8 * bound, f"{position} {name}: max |value| {top} far below bound {bound}: not U(±bound)?"
            assert abs(parts.mean().item()) < 0.1 * bound, f"{position} {name} is not centred"

    # -- forward / backward -----------------------------------------------------------------------
    @pytest.mark.parametrize("device", devices())
    @pytest.mark.parametrize("sharing", CORE_STRATEGIES)
    def test_forward_backward_finite_float32(
        self, act: Activation, sharing: str, device: str, plugin_registry: PluginRegistry
    ) -> None:
        torch.manual_seed(0)
        spec = ModelSpec(in_dim=2, out_dim=3, width=32, layers=4, item_shapes=((8, 8),) * 3)
        model = build_model(act, plugin_registry.create("sharing", sharing), spec).to(device)
        assert not inr_model_gaps(model)
        coords = (torch.rand(3, 50, 2, device=device) * 2 - 1).requires_grad_(False)
        out = model(coords)
        assert out.shape == (3, 50, 3) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        out.square().mean().backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(torch.view_as_real(g) if g.is_complex() else g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads if g is not None)
        for p in model.parameters():
            assert p.dtype in (torch.float32, torch.complex64), f"parameter dtype {p.dtype}"

    @pytest.mark.parametrize("position", ["first", "hidden"])
    @pytest.mark.parametrize("shared", [False, True])
    def test_a_declared_scaled_form_equals_the_activation(self, act: Activation, position: str, shared: bool) -> None:
        """``scaled_form`` (optional) promises ``activate_layer(z) == f(omega * z)``, gradients
        included: a model folds ``omega`` into the layer's product on its strength."""
        layer = LayerDef(name="l", in_features=8, out_features=16, position=position, shared=shared)  # type: ignore[arg-type]
        form = act.scaled_form(layer)
        if form is None:
            pytest.skip("declares no f(omega * z) form")
        omega, f = form
        assert isinstance(omega, float) and math.isfinite(omega) and omega > 0
        z = (torch.randn(4, 64, 16, dtype=torch.float64) * 0.2).requires_grad_(True)
        z2 = z.detach().clone().requires_grad_(True)
        expected, got = act.activate_layer(z, layer), f(omega * z2)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
        weights = torch.randn_like(expected)
        (expected * weights).sum().backward()
        (got * weights).sum().backward()
        torch.testing.assert_close(z2.grad, z.grad, rtol=1e-8, atol=1e-8)

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    def test_cuda_matches_cpu(self, act: Activation, plugin_registry: PluginRegistry) -> None:
        torch.manual_seed(0)
        spec = ModelSpec(in_dim=2, out_dim=3, width=32, layers=4, item_shapes=((8, 8),) * 2)
        model = build_model(act, plugin_registry.create("sharing", "minr"), spec)
        coords = torch.rand(2, 40, 2) * 2 - 1
        expected = model(coords)
        got = model.to("cuda")(coords.to("cuda")).cpu()
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)

    # -- a short fit ------------------------------------------------------------------------------
    @pytest.mark.parametrize("sharing", CORE_STRATEGIES)
    def test_short_fit_improves_psnr(
        self, activation_name: str, sharing: str, plugin_registry: PluginRegistry, tmp_path: Path
    ) -> None:
        from inrkit import api

        paths = write_test_images(tmp_path)
        config = {
            "activation": {"name": activation_name},
            "sharing": {"name": sharing},
            "model": {"width": 64, "layers": 4},
            "train": {"steps": 150, "device": "cpu"},
        }
        result = api.fit(config, data=[str(p) for p in paths], save=False, registry=plugin_registry)
        assert result.metrics is not None
        start = result.metrics.history[0].psnr
        final = result.metrics.psnr_mean
        assert final is not None and math.isfinite(final), "the fit produced no finite PSNR"
        assert final >= start + MIN_FIT_GAIN_DB, (
            f"{activation_name} + {sharing}: PSNR {final:.2f} dB after 150 steps at its default lr, "
            f"untrained {start:.2f} dB"
        )


