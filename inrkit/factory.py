"""From names to a model: :func:`create_model`, the one factory for research code.

Like timm's ``create_model``, one call turns plugin names (or instances) and sizes into a
ready model, through the same registry ``inrkit run`` uses. The model follows the
:class:`~inrkit.interfaces.INRModel` protocol, so it can be trained in any loop::

    model = inrkit.create_model(activation="finer", sharing="minr", n_items=4, width=256, layers=5)
    pred = model(inrkit.coords.grid((64, 64)).expand(4, -1, -1))      # (4, 4096, 3)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
import torch

from inrkit.config import ModelConfig, RunConfig
from inrkit.errors import ConfigError, format_validation_error
from inrkit.interfaces import Activation, INRModel, ModelSpec, PluginOptions, SharingStrategy
from inrkit.nn import validate_model
from inrkit.plugins import PluginRegistry, get_registry

Options = Mapping[str, Any] | PluginOptions | None


def run_spec(
    config: RunConfig, in_dim: int, item_shapes: Sequence[Sequence[int]], channels: int, **extra: Any
) -> ModelSpec:
    """The model spec of a run config for items of these shapes (``extra``: ``item_indices``,
    ``run_item_shapes`` when one item of a run is decoded)."""
    return ModelSpec(
        in_dim=in_dim,
        out_dim=channels,
        width=config.model.width,
        layers=config.model.layers,
        item_shapes=tuple(tuple(int(n) for n in s) for s in item_shapes),
        **extra,
    )


def build_model(activation: Activation, sharing: SharingStrategy, spec: ModelSpec) -> INRModel:
    """Ask the sharing strategy for a model and check it follows the protocol's layout."""
    return validate_model(sharing.build(activation, spec), sharing.name, spec)


def create_model(
    activation: str | Activation = "siren",
    sharing: str | SharingStrategy = "minr",
    *,
    n_items: int | None = None,
    item_shapes: Sequence[Sequence[int]] | None = None,
    width: int = 256,
    layers: int = 5,
    in_dim: int = 2,
    out_dim: int = 3,
    activation_options: Options = None,
    sharing_options: Options = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    registry: PluginRegistry | None = None,
) -> INRModel:
    """A model for ``n_items`` signals, built by the sharing strategy with the activation.

    ``activation`` and ``sharing`` are registered names (options as a dict or the plugin's
    ``Options`` in ``activation_options`` / ``sharing_options``) or plugin instances.
    ``item_shapes`` gives each item's spatial shape; only strategies that lay items out (the
    ``row``/``column``/``grid`` canvas) use it, and by default all items have one shape.
    ``layers`` counts the linear layers of one plain MLP as the paper does. ``seed`` seeds the
    initialisation (``inrkit run`` with ``train.seed`` builds the identical model).
    """
    registry = registry or get_registry()
    act = _plugin(registry, "activation", activation, activation_options, Activation)
    strategy = _plugin(registry, "sharing", sharing, sharing_options, SharingStrategy)
    try:
        sizes = ModelConfig(width=width, layers=layers)
    except pydantic.ValidationError as exc:
        raise ConfigError(f"create_model: {format_validation_error(exc)}") from None
    for label, value in (("in_dim", in_dim), ("out_dim", out_dim)):
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"create_model: {label} must be a positive integer (got {value!r})")
    shapes = _item_shapes(n_items, item_shapes, in_dim)
    spec = ModelSpec(in_dim=in_dim, out_dim=out_dim, width=sizes.width, layers=sizes.layers, item_shapes=shapes)
    if seed is not None:
        torch.manual_seed(seed)
    model = build_model(act, strategy, spec)
    if device is not None:
        from inrkit.devices import resolve_device

        model.to(resolve_device(device))
    return model


def _plugin(registry: PluginRegistry, kind: str, value: Any, options: Options, base: type) -> Any:
    if isinstance(value, base):
        if options is not None:
            raise ConfigError(f"create_model: {kind} is already an instance; give its options when creating it")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"create_model: {kind} must be a registered name or a {base.__name__}, got {type(value).__name__}")
    return registry.create(kind, value, options)


def _item_shapes(n_items: int | None, item_shapes: Sequence[Sequence[int]] | None, in_dim: int) -> tuple[tuple[int, ...], ...]:
    if item_shapes is None:
        if not isinstance(n_items, int) or n_items <= 0:
            raise ConfigError(f"create_model: n_items must be a positive integer (got {n_items!r})")
        return ((1,) * in_dim,) * n_items
    shapes = tuple(tuple(int(s) for s in shape) for shape in item_shapes)
    if n_items is not None and n_items != len(shapes):
        raise ConfigError(f"create_model: n_items={n_items} but {len(shapes)} item shapes were given")
    if not shapes:
        raise ConfigError("create_model: give at least one item")
    for shape in shapes:
        if len(shape) != in_dim or any(s <= 0 for s in shape):
            raise ConfigError(f"create_model: item shape {shape} must be {in_dim} positive sizes (in_dim={in_dim})")
    return shapes
