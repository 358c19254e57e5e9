"""The three plugin interfaces: ``Activation``, ``SharingStrategy`` and ``Signal``.

The core only ever talks to these abstract classes; concrete ones come from plugins. Every plugin
class has a unique ``name`` and a pydantic ``Options`` model that forbids unknown keys, so a typo
in ``--set activation.omgea=3`` is an error rather than silently ignored.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pydantic

if TYPE_CHECKING:
    import torch

    from inrkit.nn import MultiINR

#: Where a linear layer sits in the MLP; activations initialise each position differently.
LayerPosition = Literal["first", "hidden", "last"]


class PluginOptions(pydantic.BaseModel):
    """Base of every plugin's ``Options``: unknown keys are errors, values are validated."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class Plugin(abc.ABC):
    """What all plugin classes share: a registry ``name`` and validated ``options``."""

    #: Unique name within the plugin's kind, used on the command line and in configs.
    name: ClassVar[str]
    #: Plugin kind, set by the three interfaces below.
    kind: ClassVar[str]

    class Options(PluginOptions):
        pass

    def __init__(self, options: PluginOptions | dict[str, Any] | None = None) -> None:
        if options is None:
            options = self.Options()
        elif isinstance(options, dict):
            options = self.Options(**options)
        elif not isinstance(options, self.Options):
            raise TypeError(f"{type(self).__name__} expects {self.Options.__name__}, got {type(options).__name__}")
        self.options = options

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"


class Activation(Plugin):
    """A nonlinearity plus the weight initialisation that belongs to it.

    Weights everywhere in inrkit are laid out ``(..., in_features, out_features)``; a leading
    item dimension (one weight per signal) is allowed, so ``fan_in`` is ``weight.shape[-2]``.
    """

    kind: ClassVar[str] = "activation"
    #: Learning rate the trainer uses when the user gives none.
    default_lr: ClassVar[float] = 1e-4
    #: True when layers after the first work in complex numbers (WIRE).
    is_complex: ClassVar[bool] = False

    @abc.abstractmethod
    def activate(self, z: torch.Tensor, position: LayerPosition) -> torch.Tensor:
        """Apply the nonlinearity to the pre-activation ``z`` of a first or hidden layer."""

    def init_(self, weight: torch.Tensor, bias: torch.Tensor, position: LayerPosition) -> None:
        """Initialise ``weight`` (``(..., in, out)``) and ``bias`` (``(..., out)``) in place.

        By default uniformly within :meth:`init_bounds` (real and imaginary parts alike for
        complex layers); override for any other scheme, and make ``init_bounds`` return ``None``.
        """
        bounds = self.init_bounds(position, weight.shape[-2])
        if bounds is None:
            raise NotImplementedError(f"{type(self).__name__} must implement init_ or init_bounds")
        import torch

        with torch.no_grad():
            weight.uniform_(-bounds[0], bounds[0])
            bias.uniform_(-bounds[1], bounds[1])

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Map raw coordinates to the first layer's input (identity unless overridden)."""
        return coords

    def encoded_dim(self, in_dim: int) -> int:
        """Width of :meth:`encode`'s output for ``in_dim`` coordinates."""
        return in_dim

    def hidden_width(self, width: int) -> int:
        """The hidden width actually built for a requested ``width``.

        Complex activations (WIRE) return ``int(width / sqrt(2))`` so that, counting a complex
        weight as two real numbers, the parameter count stays comparable.
        """
        return width

    def layer_dtype(self, position: LayerPosition) -> torch.dtype | None:
        """dtype of a layer's parameters; ``None`` is the default float. Complex activations
        return a complex dtype after the first layer (the first layer takes real coordinates)."""
        if self.is_complex and position != "first":
            import torch

            return torch.complex64
        return None

    def init_bounds(self, position: LayerPosition, fan_in: int) -> tuple[float, float] | None:
        """``(weight_bound, bias_bound)`` of the uniform initialisation :meth:`init_` draws from.

        The default is PyTorch's ``nn.Linear`` default, ``U(±1/sqrt(fan_in))`` for both. Return
        ``None`` when an overridden ``init_`` is not uniform; the contract kit then only checks
        that the values are finite and not constant.
        """
        bound = 1.0 / math.sqrt(fan_in)
        return bound, bound


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything a sharing strategy needs to build a model for some items."""

    #: Number of coordinate dimensions (2 for images).
    in_dim: int
    #: Number of output channels (3 for RGB).
    out_dim: int
    #: Hidden width.
    width: int
    #: Number of linear layers of one plain MLP, counted as the paper does (first + hidden + last).
    layers: int
    #: Spatial shape of every item the model holds, in order.
    item_shapes: tuple[tuple[int, ...], ...]
    #: Index of each held item within the whole run (decoding one item builds a one-item model).
    item_indices: tuple[int, ...] | None = None
    #: Number of items in the whole run.
    total_items: int | None = None
    #: Spatial shape of every item of the whole run (a canvas layout needs them all).
    run_item_shapes: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self) -> None:
        if self.item_indices is None:
            object.__setattr__(self, "item_indices", tuple(range(len(self.item_shapes))))
        if self.run_item_shapes is None:
            object.__setattr__(self, "run_item_shapes", tuple(self.item_shapes))
        if self.total_items is None:
            object.__setattr__(self, "total_items", len(self.run_item_shapes))

    @property
    def n_items(self) -> int:
        return len(self.item_shapes)


class SharingStrategy(Plugin):
    """Builds one ``torch.nn.Module`` for N signals and decides what is shared.

    The module returned by :meth:`build` must be an :class:`inrkit.nn.MultiINR`: parameters
    under ``shared.`` are common to all items, parameters under ``items.`` carry a leading
    dimension of size N (one slice per item). The checkpoint, the parameter counts and decoding
    one item all rely on that convention.
    """

    kind: ClassVar[str] = "sharing"

    @abc.abstractmethod
    def build(self, activation: Activation, spec: ModelSpec) -> MultiINR:
        """Return the model for ``spec.n_items`` items."""


@dataclasses.dataclass
class Item:
    """One signal: a named array with spatial axes first and channels last, values in [0, 1]."""

    name: str
    #: Ground truth at evaluation resolution, shape ``(*spatial, channels)``, float32 in [0, 1].
    data: np.ndarray
    #: Free-form facts the signal wants back when writing reconstructions (source path, bit depth).
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape (without channels)."""
        return tuple(self.data.shape[:-1])

    @property
    def channels(self) -> int:
        return int(self.data.shape[-1])


class Signal(Plugin):
    """Turns user data into items and reconstructions back into files."""

    kind: ClassVar[str] = "signal"
    #: Number of coordinate dimensions of one item.
    in_dim: ClassVar[int] = 2

    @abc.abstractmethod
    def load(self, sources: Sequence[str]) -> list[Item]:
        """Load items from user sources (paths, globs, ...); empty ``sources`` means built-in samples.

        Raises :class:`inrkit.errors.DataError` naming the source for anything unusable.
        """

    def train_view(self, item: Item) -> np.ndarray:
        """The array the model is fitted to (super-resolution returns a downsampled one)."""
        return item.data

    def eval_view(self, item: Item) -> np.ndarray:
        """The array reconstructions are scored against (by default the same as training)."""
        return item.data

    @abc.abstractmethod
    def save(self, item: Item, reconstruction: np.ndarray, folder: Path) -> list[Path]:
        """Write ``reconstruction`` (same layout as ``item.data``, in [0, 1]) into ``folder``."""

    def save_all(self, items: Sequence[Item], reconstructions: Sequence[np.ndarray], folder: Path) -> list[Path]:
        """Write every reconstruction (a video signal also writes them as one clip)."""
        return [p for item, rec in zip(items, reconstructions, strict=True) for p in self.save(item, rec, folder)]

    def extra_metrics(self, item: Item) -> dict[str, float | None]:
        """Per-item reference figures reported beside PSNR/SSIM (super-resolution: bicubic's)."""
        return {}

    def reference_views(self, item: Item) -> dict[str, np.ndarray]:
        """Other reconstructions to compare with in figures, by label (super-resolution: bicubic)."""
        return {}


PLUGIN_BASES: dict[str, type[Plugin]] = {
    "activation": Activation,
    "sharing": SharingStrategy,
    "signal": Signal,
}
