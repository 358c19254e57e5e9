"""The plugin interfaces and the model protocol: everything a plugin author implements against.

Four plugin kinds, each an abstract class with a registry ``name`` and a pydantic ``Options``
model that forbids unknown keys (so ``--set activation.omgea=3`` is an error, not ignored):

- :class:`Activation`: a nonlinearity and the initialisation that belongs to it;
- :class:`SharingStrategy`: builds one model for N items, deciding what is shared;
- :class:`Signal`: turns user data into items and reconstructions back into files;
- :class:`Callback`: watches a fit (progress, TensorBoard, a log file, a user's own tracker).

The model a strategy builds is described by the :class:`INRModel` protocol: the one place that
states what the trainer, checkpoints, decoding and parameter counts rely on. This module imports
nothing of inrkit above it, so a plugin that only needs the interfaces stays light.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import pydantic

from inrkit.inits import pytorch_default_bounds
from inrkit.results import Evaluation, RunMetrics, StepLog, TrainResult

if TYPE_CHECKING:
    import torch
    from torch import nn

#: Where a linear layer sits in the MLP; activations initialise each position differently.
LayerPosition = Literal["first", "hidden", "last"]


@dataclasses.dataclass(frozen=True)
class LayerDef:
    """One linear layer of a model, in forward order: what an activation may know about it.

    ``name`` is the layer's key in ``shared``/``items`` (``first``, ``projection``, ``hidden2``
    ... ``last`` for MLPs built by :func:`inrkit.nn.mlp_layer_defs`); ``shared`` says whether
    one weight serves every item or each item has its own; ``projection`` marks a per-item layer
    whose output feeds shared layers (MINR's projection layer, Eq. 2), which an activation may
    treat like the shared layers it serves. ``rank`` makes a per-item layer low-rank: each
    item's weight is ``U_i @ V_i`` with ``U_i`` ``(in, rank)`` and ``V_i`` ``(rank, out)``
    (:class:`inrkit.nn.LowRankBatchedLinear`); on a shared layer it adds a per-item low-rank
    delta (LoRA): item ``i`` uses ``W + U_i @ V_i`` and ``b + b_i``, the shared part under
    ``shared.<name>``, the delta under ``items.<name>``. ``None`` is a plain full weight.
    """

    name: str
    in_features: int
    out_features: int
    position: LayerPosition
    shared: bool
    projection: bool = False
    rank: int | None = None


@functools.cache
def _whole_number_fields(model: type[pydantic.BaseModel]) -> frozenset[str]:
    """The fields of ``model`` typed as whole numbers (``int``, ``int | None``, ``int | "auto"``)."""
    found = set()
    for name, field in model.model_fields.items():
        kinds = typing.get_args(field.annotation) or (field.annotation,)
        if int in kinds and bool not in kinds:
            found.add(name)
    return frozenset(found)


class NoBoolCounts(pydantic.BaseModel):
    """A config model whose whole-number fields refuse ``True``/``False``: pydantic's lax ``int``
    takes ``True`` as 1, so ``--set train.items_per_step=true`` would train one item per step."""

    @pydantic.field_validator("*", mode="before")
    @classmethod
    def _no_bool_counts(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name in _whole_number_fields(cls):
            raise ValueError("must be a whole number, not a boolean")
        return value


class PluginOptions(NoBoolCounts):
    """Base of every plugin's ``Options``: unknown keys are errors, values are validated (a
    whole-number option refuses booleans)."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class Plugin(abc.ABC):
    """What all plugin classes share: a registry ``name`` and validated ``options``."""

    #: Unique name within the plugin's kind, used on the command line and in configs.
    name: ClassVar[str]
    #: Plugin kind, set by the interfaces below.
    kind: ClassVar[str]
    #: The validated options (subclasses declare ``options: Options`` for their own type).
    options: PluginOptions

    class Options(PluginOptions):
        pass

    def __init__(self, options: PluginOptions | Mapping[str, Any] | None = None) -> None:
        if options is None:
            options = self.Options()
        elif isinstance(options, Mapping):
            options = self.Options(**options)
        elif not isinstance(options, self.Options):
            raise TypeError(f"{type(self).__name__} expects {self.Options.__name__}, got {type(options).__name__}")
        self.options = options

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"


# -- activations ------------------------------------------------------------------------------
#: ``(omega, f)``: an activation that is ``f(omega * z)`` (see :meth:`Activation.scaled_form`).
#: (``f`` maps a tensor to a tensor; spelled loosely here so this module does not import torch.)
ScaledForm = tuple[float, Callable[[Any], Any]]


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

    def activate_layer(self, z: torch.Tensor, layer: LayerDef) -> torch.Tensor:
        """:meth:`activate` for a layer described in full (is it shared? its name and size).

        Models call this one. The default ignores everything but the position; an activation
        that treats, say, shared layers differently overrides it.
        """
        return self.activate(z, layer.position)

    def scaled_form(self, layer: LayerDef) -> ScaledForm | None:
        """``(omega, f)`` when this layer's activation is exactly ``f(omega * z)``; ``None``
        (the default) when it is not, or not declared.

        Optional. A model given the form folds ``omega`` into the layer's matrix product (the
        GEMM's ``alpha`` and ``beta``, forward and both backward products) and applies ``f`` to
        the product: one full-width pass fewer forward and one fewer backward per activated
        layer. ``f`` must equal :meth:`activate_layer` after the scaling, gradients included
        (the contract kit checks it). SIREN: ``(omega, torch.sin)``.
        """
        return None

    def init_layer_(self, weight: torch.Tensor, bias: torch.Tensor, layer: LayerDef) -> None:
        """:meth:`init_` for a layer described in full; models call this one (default: by position)."""
        self.init_(weight, bias, layer.position)

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

        The default is PyTorch's ``nn.Linear`` default, ``U(±1/sqrt(fan_in))`` for both
        (:mod:`inrkit.inits` has SIREN's bounds too). Return ``None`` when an overridden
        ``init_`` is not uniform; the contract kit then only checks that the values are finite
        and not constant.
        """
        return pytorch_default_bounds(fan_in)


# -- models -----------------------------------------------------------------------------------
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
            object.__setattr__(self, "total_items", len(self.run_item_shapes or ()))

    @property
    def n_items(self) -> int:
        return len(self.item_shapes)


@dataclasses.dataclass(frozen=True)
class ModelCapabilities:
    """What a model supports, declared as data (the trainer never guesses from its methods)."""

    #: Under ``torch.autocast`` (``train.precision = "bf16"``) the forward pass keeps what needs
    #: float32 (coordinates, first and last layers, the activations) in float32 itself, so the
    #: trainer may autocast it.
    bf16: bool = True
    #: The items may be split across processes (``torchrun``): each item's parameters get
    #: gradient only from that item's points, and :meth:`INRModel.training_step` is the
    #: trainer's default loop (no optimisation of its own across items).
    distributed: bool = True


#: ``forward(coords, items)``: ``(rows, P, in_dim)`` coordinates to ``(rows, P, out_dim)`` values.
Forward = Callable[["torch.Tensor", "torch.Tensor | None"], "torch.Tensor"]


@runtime_checkable
class TrainingStep(Protocol):
    """One training step's data, as the trainer hands it to :meth:`INRModel.training_step`.

    The data are every point of the items being trained, in chunks. Per-item loss vectors have
    one entry per item of the step (``n_items``); an item's entry is its mean squared error
    divided by the number of items of the run, so their sum is the loss (each item's MSE
    averaged over items). ``forward`` arguments default to the trainer's (possibly compiled,
    autocast) forward pass of the model.
    """

    @property
    def n_items(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def accumulate(self, forward: Forward | None = None) -> torch.Tensor:
        """The default step: chunk by chunk, forward, loss and backward (gradients accumulate
        in ``.grad``); returns the per-item losses, detached."""
        ...

    def losses(self, forward: Forward) -> torch.Tensor:
        """Per-item losses over every chunk as one differentiable graph (memory grows with the
        points: for second-order inner loops such as COIN++'s MAML)."""
        ...

    def chunk_losses(self, forward: Forward) -> Iterator[torch.Tensor]:
        """Each chunk's share of the per-item losses, differentiable, one chunk at a time."""
        ...


class INRModel(Protocol):
    """The model a :class:`SharingStrategy` builds: a ``torch.nn.Module`` for N items.

    Everything outside the model relies on this and nothing more:

    - **Parameter layout.** Every parameter lives under ``shared.<name>`` (one tensor for all
      items) or ``items.<name>`` (leading dimension N, row ``i`` belongs to item ``i``).
      Checkpoints store ``shared.*`` once and ``items.<i>.*`` per item, parameter counts add
      them up, decoding one item loads the shared tensors and that item's rows, and distributed
      training all-reduces ``shared`` gradients and gathers ``items`` rows.
    - **Forward.** ``model(coords, items=None)``: ``(rows, P, in_dim)`` coordinates in [-1, 1]
      to ``(rows, P, out_dim)`` values in about [-1, 1]; ``items`` (a long tensor) says which
      of the model's items the rows are, in any order; ``None`` means row ``i`` is item ``i``.
      A forward over a subset of items equals the same rows of the full forward.
    - **Item selection.** ``with model.select_items(items):`` may select the per-item rows once
      for many forward passes over the same items (a speed-up; it may also do nothing).
    - **Training hooks.** :meth:`training_step` computes one step's gradients (the default,
      :meth:`TrainingStep.accumulate`, is the trainer's chunked loop); a strategy with its own
      optimisation (COIN++'s meta-learning) replaces it. :meth:`prepare_evaluation` runs
      before every evaluation (COIN++ fits its latent codes there).
    - **Capabilities** (:class:`ModelCapabilities`) and the ``spec`` and ``activation`` it was
      built from.

    :class:`inrkit.nn.MultiINR` implements all of it for MLPs whose layers are each shared or
    per item; most strategies build one. :func:`inrkit.nn.validate_model` checks the layout, and
    :func:`inr_model_gaps` lists missing members. The protocol is deliberately not
    ``runtime_checkable``: from Python 3.12, ``isinstance`` against a protocol looks attributes up
    statically and so misses the submodules an ``nn.Module`` keeps in ``_modules``
    (``shared``, ``items``), rejecting every real model.
    """

    activation: Activation
    spec: ModelSpec
    capabilities: ModelCapabilities
    shared: nn.ModuleDict
    items: nn.ModuleDict

    @property
    def n_items(self) -> int: ...

    def __call__(self, coords: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor: ...

    def forward(self, coords: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor: ...

    def select_items(self, items: torch.Tensor | None) -> contextlib.AbstractContextManager[None]: ...

    def training_step(self, step: TrainingStep) -> torch.Tensor: ...

    def prepare_evaluation(self, step: TrainingStep) -> None: ...

    # torch.nn.Module's own methods that inrkit calls
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True) -> Iterator[tuple[str, nn.Parameter]]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def zero_grad(self, set_to_none: bool = True) -> None: ...

    def eval(self) -> Any: ...


def inr_model_gaps(model: object) -> list[str]:
    """The :class:`INRModel` members that ``model`` lacks (empty for a complete model).

    Looked up with ``hasattr``, which finds ``nn.Module`` submodules and parameters, unlike the
    static lookup of ``isinstance`` against a protocol on Python 3.12 and later.
    """
    return [name for name in _INR_MODEL_MEMBERS if not hasattr(model, name)]


_INR_MODEL_MEMBERS = tuple(dict.fromkeys(
    name for name in [*INRModel.__annotations__, *vars(INRModel)] if name == "__call__" or not name.startswith("_")
))


class SharingStrategy(Plugin):
    """Builds one model for N signals and decides what is shared.

    :meth:`build` returns an :class:`INRModel`. When one item of a run is decoded, ``build`` is
    called for a one-item spec whose ``item_indices`` holds that item's index in the run.
    """

    kind: ClassVar[str] = "sharing"

    @abc.abstractmethod
    def build(self, activation: Activation, spec: ModelSpec) -> INRModel:
        """Return the model for ``spec.n_items`` items."""


# -- signals ----------------------------------------------------------------------------------
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


# -- callbacks --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FitContext:
    """What a callback knows about the fit it watches."""

    #: Number of the last step.
    total_steps: int
    #: Steps already done when this fit started (a resumed run's snapshot step; 0 otherwise).
    start_step: int
    #: The items' names, in the order of per-item values.
    item_names: tuple[str, ...]
    #: Base learning rate (before the schedule's decay).
    lr: float
    device: str
    #: The run folder, or ``None`` when nothing is saved (``fit(save=False)``, ``Trainer.fit``).
    run_dir: Path | None = None
    #: The run's configuration as JSON data (empty for a bare :meth:`inrkit.Trainer.fit`).
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: The model being trained, to read (its weights, their gradients after a step); never to change.
    model: INRModel | None = None
    #: The experiment this fit belongs to (``"compare:<folder>"`` for the fits of one ``inrkit
    #: compare``, likewise ``sweep``, ``front``, ``rd``); ``None`` for a single run. Trackers group by it.
    group: str | None = None
    #: True when :meth:`Callback.on_results` follows :meth:`Callback.on_fit_end` (a run through
    #: :func:`inrkit.fit` and the CLI); false for a bare :meth:`inrkit.Trainer.fit`, whose last hook is
    #: ``on_fit_end``.
    results_follow: bool = False


class Callback(Plugin):
    """Watches a fit: the progress bar, TensorBoard, a JSONL log, a user's own tracker.

    Every hook has a default that does nothing; override the ones you need. Hooks are called in
    this order: :meth:`on_fit_start`; :meth:`on_step_end` after every step (and
    :meth:`on_snapshot` after a resumable snapshot is taken, :meth:`on_evaluate` after an
    evaluation every ``train.eval_every`` steps); :meth:`on_evaluate` for the final evaluation;
    :meth:`on_fit_end`, which is always called, also when training stops with an error or
    Ctrl-C (``result`` is then ``None``); then, for a run that writes results (:func:`inrkit.fit`,
    the CLI; ``context.results_follow``) and whose training ended well, :meth:`on_results` once
    ``metrics.json``, ``recon/`` and the plots are written. In a distributed run callbacks run on rank 0 only.
    Hooks must not change the model: a run's results are the same with or without callbacks.
    """

    kind: ClassVar[str] = "callback"

    def on_fit_start(self, context: FitContext) -> None:
        """Training is about to start (or resume, from ``context.start_step``)."""

    def on_step_end(self, context: FitContext, log: StepLog) -> None:
        """A step finished; ``log.logged`` marks the steps whose per-item PSNR is known."""

    def on_snapshot(self, context: FitContext, step: int, path: Path | None) -> None:
        """A resumable snapshot after ``step`` was taken (``path``: where it was saved, if anywhere)."""

    def on_evaluate(self, context: FitContext, evaluation: Evaluation) -> None:
        """The model was rendered and scored on every item's evaluation view."""

    def on_fit_end(self, context: FitContext, result: TrainResult | None) -> None:
        """The fit ended (``result`` is ``None`` when it stopped with an error); release resources."""

    def on_results(self, context: FitContext, metrics: RunMetrics | None, run_dir: Path | None) -> None:
        """The run's results are written: ``metrics`` is ``metrics.json``'s content and ``run_dir``
        holds it with ``recon/`` and ``plots/`` (``None`` when nothing is saved). Called after
        :meth:`on_fit_end` when ``context.results_follow`` and training ended well; ``metrics`` is
        ``None`` when writing the results failed (the error follows). A tracker that keeps its
        run open for these results closes it here."""


PLUGIN_BASES: dict[str, type[Plugin]] = {
    "activation": Activation,
    "sharing": SharingStrategy,
    "signal": Signal,
    "callback": Callback,
}
