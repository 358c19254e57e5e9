"""The sharing-strategy contract kit: checks every sharing strategy plugin must pass.

Subclass :class:`SharingStrategyContract` in your test suite and name your strategy; pytest then
runs every check below against it, through the registry ``inrkit run`` uses::

    from inrkit.testing import SharingStrategyContract

    class TestFilm(SharingStrategyContract):
        sharing = "film"

The checks are what the rest of inrkit relies on (:class:`~inrkit.interfaces.INRModel`): the
strategy is registered under its name with validated options; the model it builds passes
:func:`~inrkit.nn.validate_model` (every parameter under ``shared``/``items``, one row per
item); a forward pass over a subset of the items equals the same rows of the full forward; a
one-item model built for item ``i`` and loaded from a checkpoint (as ``inrkit decode`` does)
equals the full model's output for that item; a checkpoint round trip restores the model exactly;
parameter counts are exact and equal to ``inrkit params``; its ``training_step`` gives finite
gradients to every trainable parameter; the capabilities it declares hold (bf16: a forward under
autocast stays float32 and close; distributed: an item's rows get gradient only from that item);
a short fit improves PSNR; and on CUDA, when present, the model gives the CPU's outputs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from inrkit.factory import build_model
from inrkit.interfaces import INRModel, ModelCapabilities, ModelSpec, SharingStrategy, inr_model_gaps
from inrkit.nn import count_parameters, validate_model
from inrkit.plugins import PluginRegistry
from inrkit.runs import checkpoint
from inrkit.testing._common import PluginContract, write_test_images
from inrkit.training.points import PointSet
from inrkit.training.trainer import ChunkedStep

#: PSNR gain (dB) over the untrained network that a 100-step fit must reach.
MIN_FIT_GAIN_DB = 3.0


def _real(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


class SharingStrategyContract(PluginContract):
    """Checks every sharing strategy must pass. Set ``sharing`` to the registered name."""

    kind: ClassVar[str] = "sharing"
    #: The strategy's registered name.
    sharing: ClassVar[str]
    #: Options it is built with (``{}``: its defaults).
    options: ClassVar[dict[str, Any]] = {}
    #: Activations it is checked with: a real-valued and a complex-valued one.
    activations: ClassVar[tuple[str, ...]] = ("siren", "wire")
    #: Spatial shapes of the items of the test models.
    item_shapes: ClassVar[tuple[tuple[int, ...], ...]] = ((6, 6), (6, 6), (6, 6))
    width: ClassVar[int] = 16
    layers: ClassVar[int] = 4

    @pytest.fixture
    def sharing_name(self) -> str:
        return self.sharing

    @pytest.fixture
    def plugin_name(self, sharing_name: str) -> str:
        return sharing_name

    @pytest.fixture
    def strategy(self, sharing_name: str, plugin_registry: PluginRegistry) -> SharingStrategy:
        return plugin_registry.create("sharing", sharing_name, self.options)

    @pytest.fixture(params=["siren", "wire"])
    def activation_name(self, request: pytest.FixtureRequest) -> str:
        if request.param not in self.activations:
            pytest.skip(f"{request.param} is not among this kit's activations")
        return str(request.param)

    def spec(self, shapes: Sequence[tuple[int, ...]] | None = None, **extra: Any) -> ModelSpec:
        shapes = tuple(shapes or self.item_shapes)
        return ModelSpec(in_dim=len(shapes[0]), out_dim=3, width=self.width, layers=self.layers, item_shapes=shapes, **extra)

    def build(
        self, strategy: SharingStrategy, activation: str, registry: PluginRegistry, spec: ModelSpec | None = None, seed: int = 0
    ) -> INRModel:
        torch.manual_seed(seed)
        return build_model(registry.create("activation", activation), strategy, spec or self.spec())

    def coords(self, rows: int, points: int = 23, seed: int = 1) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(rows, points, len(self.item_shapes[0]), generator=generator) * 2 - 1

    # -- the model's layout ---------------------------------------------------------------------
    def test_builds_a_valid_inr_model(self, strategy: SharingStrategy, activation_name: str, plugin_registry: PluginRegistry) -> None:
        spec = self.spec()
        model = self.build(strategy, activation_name, plugin_registry, spec)
        assert isinstance(model, torch.nn.Module) and not inr_model_gaps(model)
        validate_model(model, strategy.name, spec)
        assert isinstance(model.capabilities, ModelCapabilities)
        assert model.n_items == spec.n_items and model.spec == spec
        for name, p in model.named_parameters():
            assert name.startswith(("shared.", "items.")), f"parameter {name} is outside shared/items"
            assert p.dtype in (torch.float32, torch.complex64), f"{name}: dtype {p.dtype}"
        for name, p in model.items.named_parameters():
            assert p.shape[0] == spec.n_items, f"items.{name}: first dimension {p.shape[0]}, not {spec.n_items}"
        outside = [key for key in model.state_dict() if not key.startswith(("shared.", "items."))]
        assert not outside, f"state_dict entries outside shared/items are not saved in checkpoints: {outside}"

    def test_forward_shape_dtype_and_finite(self, strategy: SharingStrategy, activation_name: str, plugin_registry: PluginRegistry) -> None:
        model = self.build(strategy, activation_name, plugin_registry)
        out = model(self.coords(model.n_items))
        assert out.shape == (model.n_items, 23, 3) and out.dtype == torch.float32
        assert torch.isfinite(out).all()

    def test_a_subset_forward_equals_the_same_rows_of_the_full_forward(
        self, strategy: SharingStrategy, activation_name: str, plugin_registry: PluginRegistry
    ) -> None:
        model = self.build(strategy, activation_name, plugin_registry)
        n = model.n_items
        coords = self.coords(n)
        with torch.no_grad():
            full = model(coords)
            for rows in ([n - 1, 0], [1], list(range(n))[::-1]):
                index = torch.tensor(rows)
                got = model(coords[index], index)
                torch.testing.assert_close(got, full[index], rtol=1e-5, atol=1e-6, msg=f"items {rows}")
                with model.select_items(index):  # the selection block must not change results
                    torch.testing.assert_close(model(coords[index], index), full[index], rtol=1e-5, atol=1e-6)

    # -- checkpoints, decoding one item, counts --------------------------------------------------
    def test_one_item_model_from_the_checkpoint_equals_the_full_model(
        self, strategy: SharingStrategy, activation_name: str, plugin_registry: PluginRegistry, tmp_path: Path
    ) -> None:
        spec = self.spec()
        model = self.build(strategy, activation_name, plugin_registry, spec)
        path = tmp_path / "model.safetensors"
        checkpoint.save_checkpoint(path, model, {})
        coords = self.coords(spec.n_items)
        with torch.no_grad():
            full = model(coords)
        for i in range(spec.n_items):
            one_spec = self.spec((spec.item_shapes[i],), item_indices=(i,), run_item_shapes=spec.item_shapes)
            single = self.build(strategy, activation_name, plugin_registry, one_spec, seed=99)
            single.load_state_dict(checkpoint.read_item_state(path, i), strict=True)
            with torch.no_grad():
                torch.testing.assert_close(single(coords[i : i + 1]), full[i : i + 1], rtol=1e-5, atol=1e-6, msg=f"item {i}")

    def test_checkpoint_round_trip_restores_the_model(
        self, strategy: SharingStrategy, activation_name: str, plugin_registry: PluginRegistry, tmp_path: Path
    ) -> None:
        model = self.build(strategy, activation_name, plugin_registry)
        path = tmp_path / "model.safetensors"
        checkpoint.save_checkpoint(path, model, {"note": "kit"})
        other = self.build(strategy, activation_name, plugin_registry, seed=123)
        other.load_state_dict(checkpoint.read_state(path), strict=True)
        coords = self.coords(model.n_items)
        with torch.no_grad():
            torch.testing.assert_close(other(coords), model(coords), rtol=0, atol=0)
        for key, value in model.state_dict().items():
            assert torch.equal(other.state_dict()[key], value), key

    def test_parameter_counts_are_exact_and_match_inrkit_params(
        self, strategy: SharingStrategy, plugin_registry: PluginRegistry
    ) -> None:
        from inrkit import api

        for n in (1, 3, 4):
            model = self.build(strategy, "siren", plugin_registry, self.spec((self.item_shapes[0],) * n))
            shared = sum(_real(p).numel() for p in model.shared.parameters())
            items = sum(_real(p).numel() for p in model.items.parameters())
            counts = count_parameters(model)
            assert (counts.total, counts.shared, counts.per_item * n) == (shared + items, shared, items)
            config = {"sharing": {"name": strategy.name, **self.options}, "model": {"width": self.width, "layers": self.layers}}
            assert api.parameter_counts(config, n_items=n, item_shape=self.item_shapes[0], registry=plugin_registry) == counts
        if self.registry is None:  # the CLI sees the installed plugins only
            from click.testing import CliRunner

            from inrkit.cli import main

            args = ["params", "--sharing", strategy.name, "--n", "4", "--width", str(self.width), "--layers", str(self.layers), "--json"]
            for key, value in self.options.items():
                args += ["--set", f"sharing.{key}={json.dumps(value)}"]
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0, result.output
            assert json.loads(result.output) == counts.as_dict()

    # -- training ---------------------------------------------------------------------------------
    def _step(self, model: INRModel, rows: Sequence[int] | None = None) -> ChunkedStep:
        arrays = [np.random.default_rng(i).random((*s, 3), dtype=np.float32) for i, s in enumerate(self.item_shapes)]
        if rows is None:
            points = PointSet.from_arrays(arrays)
        else:
            points = PointSet.from_arrays([arrays[i] for i in rows], item_ids=list(rows), loss_items=len(arrays))
        return ChunkedStep(model, points, points.chunks(16))

    def test_training_step_gives_every_trainable_parameter_a_finite_gradient(
        self, strategy: SharingStrategy, activation_name: str, plugin_registry: PluginRegistry
    ) -> None:
        model = self.build(strategy, activation_name, plugin_registry)
        per_item = model.training_step(self._step(model))
        assert per_item.shape == (model.n_items,) and torch.isfinite(per_item).all() and (per_item > 0).all()
        trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        assert trainable, "the model has no trainable parameter"
        for name, p in trainable:
            assert p.grad is not None, f"{name} got no gradient from training_step"
            assert torch.isfinite(_real(p.grad)).all(), f"{name} has a non-finite gradient"
        assert sum(float(_real(p.grad).abs().sum()) for _, p in trainable if p.grad is not None) > 0

    def test_declared_bf16_capability_holds(self, strategy: SharingStrategy, plugin_registry: PluginRegistry) -> None:
        model = self.build(strategy, "siren", plugin_registry)
        if not model.capabilities.bf16:
            pytest.skip("the model does not declare bf16")
        coords = self.coords(model.n_items)
        with torch.no_grad():
            want = model(coords)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                got = model(coords)
        assert got.dtype == torch.float32, "under autocast the output must stay float32"
        assert float((got - want).abs().max()) < 0.05, "bf16 autocast changed the output by more than 0.05"

    def test_declared_distributed_capability_holds(self, strategy: SharingStrategy, plugin_registry: PluginRegistry) -> None:
        model = self.build(strategy, "siren", plugin_registry)
        if not model.capabilities.distributed:
            pytest.skip("the model does not declare distributed")
        # A process holding items 2 and 0 trains only their rows; its shared gradient plus the
        # other process's equals the one-process gradient.
        part = model.training_step(self._step(model, rows=[2, 0]))
        grads_part = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        for name, grad in grads_part.items():
            if name.startswith("items."):
                assert torch.equal(grad[1], torch.zeros_like(grad[1])), f"{name}: item 1 got gradient from items 2 and 0"
        model.zero_grad(set_to_none=True)
        rest = model.training_step(self._step(model, rows=[1]))
        grads_rest = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        whole = model.training_step(self._step(model))
        torch.testing.assert_close(torch.stack([part[1], rest[0], part[0]]), whole, rtol=1e-5, atol=1e-8)
        for name, p in model.named_parameters():
            if p.grad is None:
                continue
            combined = grads_part.get(name, torch.zeros_like(p.grad)) + grads_rest.get(name, torch.zeros_like(p.grad))
            torch.testing.assert_close(combined, p.grad, rtol=1e-4, atol=1e-7, msg=name)

    def test_short_fit_improves_psnr(self, sharing_name: str, plugin_registry: PluginRegistry, tmp_path: Path) -> None:
        from inrkit import api

        paths = write_test_images(tmp_path)
        config = {
            "sharing": {"name": sharing_name, **self.options},
            "model": {"width": 32, "layers": 4},
            "train": {"steps": 100, "device": "cpu"},
        }
        result = api.fit(config, data=[str(p) for p in paths], save=False, registry=plugin_registry)
        assert result.metrics is not None
        start, final = result.metrics.history[0].psnr, result.metrics.psnr_mean
        assert final is not None and np.isfinite(final)
        assert final >= start + MIN_FIT_GAIN_DB, f"{sharing_name}: {final:.2f} dB after 100 steps, untrained {start:.2f} dB"

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    def test_cuda_matches_cpu(self, strategy: SharingStrategy, plugin_registry: PluginRegistry) -> None:
        model = self.build(strategy, "siren", plugin_registry)
        coords = self.coords(model.n_items)
        with torch.no_grad():
            want = model(coords)
            got = model.to("cuda")(coords.to("cuda")).cpu()
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
