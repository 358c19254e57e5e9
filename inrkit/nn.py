"""Reusable torch modules for many INRs at once.

Weights are laid out ``(in_features, out_features)`` (per item: ``(N, in, out)``) so that one
initialisation routine serves shared and per-item layers alike, and a per-item layer is a single
``baddbmm`` over all items instead of a Python loop over N modules.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from inrkit.errors import CheckpointError, PluginError
from inrkit.interfaces import (
    Activation,
    INRModel,
    LayerDef,
    ModelCapabilities,
    ModelSpec,
    ScaledForm,
    TrainingStep,
    inr_model_gaps,
)
from inrkit.results import ParamCounts

#: Layers with at most this many inputs (coordinates: the first layer) are computed as exact
#: float32 multiply-adds on GPUs, where matrix products may use TF32 and its 10-bit mantissa would
#: round coordinates to about a quarter pixel at 2048 px.
EXACT_FAN_IN = 4


def _exact_small_fan_in(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, omega: float | None = None) -> torch.Tensor:
    """``omega * (x @ weight + bias)`` for a handful of inputs as elementwise multiply-adds (never TF32).

    ``x`` is ``(..., K)``, ``weight`` ``(..., K, out)`` and ``bias`` ``(..., out)``, broadcastable
    the way :class:`Linear` and :class:`BatchedLinear` lay them out. One fused multiply-add
    (``addcmul``) per input; ``omega`` scales the small weight and bias, not the output.
    """
    if omega is not None:
        weight, bias = weight * omega, bias * omega
    out = bias
    for k in range(x.shape[-1]):
        out = torch.addcmul(out, x[..., k : k + 1], weight[..., k, :])
    return out


class _ScaledAffine(torch.autograd.Function):
    """``omega * (x @ W + b)`` with ``omega`` as the products' ``alpha``/``beta``, forward and in
    both backward products: no separate pass multiplies a full-width tensor by ``omega``.

    ``x`` ``(P, in)`` with ``W`` ``(in, out)`` and ``b`` ``(out,)``; or batched, ``x`` ``(N, P, in)``
    with ``W`` ``(N, in, out)`` and ``b`` ``(N, 1, out)``.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, omega: float) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.omega = omega
        if x.dim() == 2:
            return torch.addmm(bias, x, weight, beta=omega, alpha=omega)
        return torch.baddbmm(bias, x, weight, beta=omega, alpha=omega)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        omega = ctx.omega
        zero = grad.new_zeros(())  # addmm(..., beta=0) ignores its input (never copied)
        grad_x = grad_w = grad_b = None
        if x.dim() == 2:
            if ctx.needs_input_grad[0]:
                grad_x = torch.addmm(zero, grad, weight.t(), beta=0, alpha=omega)
            if ctx.needs_input_grad[1]:
                grad_w = torch.addmm(zero, x.t(), grad, beta=0, alpha=omega)
            if ctx.needs_input_grad[2]:
                grad_b = grad.sum(0).mul_(omega)
        else:
            if ctx.needs_input_grad[0]:
                grad_x = torch.baddbmm(zero, grad, weight.transpose(1, 2), beta=0, alpha=omega)
            if ctx.needs_input_grad[1]:
                grad_w = torch.baddbmm(zero, x.transpose(1, 2), grad, beta=0, alpha=omega)
            if ctx.needs_input_grad[2]:
                grad_b = grad.sum(1, keepdim=True).mul_(omega)
        return grad_x, grad_w, grad_b, None


def affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, omega: float | None = None) -> torch.Tensor:
    """``x @ W + b``, or ``omega * (x @ W + b)`` with ``omega`` folded into the product (see
    :class:`_ScaledAffine`); 2-d (shared: ``bias`` ``(out,)``) or batched (``bias`` ``(N, 1, out)``)."""
    if omega is None or x.is_complex():
        if x.dim() == 2:
            return torch.addmm(bias, x, weight)
        return torch.baddbmm(bias, x, weight)
    return cast(torch.Tensor, _ScaledAffine.apply(x, weight, bias, float(omega)))


@contextlib.contextmanager
def _gathered_rows(
    module: BatchedLinear | LowRankBatchedLinear, params: Sequence[nn.Parameter], items: torch.Tensor
) -> Iterator[None]:
    """Copy rows ``items`` of ``params`` once into leaf tensors (``module._gathered`` while the
    block runs) and add their accumulated gradients back into the parameters at the end."""
    rows = tuple(p.detach().index_select(0, items).requires_grad_(p.requires_grad) for p in params)
    module._gathered = rows
    try:
        yield
    finally:
        module._gathered = None
    for param, selected in zip(params, rows, strict=True):
        if selected.grad is not None:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            param.grad.index_add_(0, items, selected.grad)


def _default_uniform_(weight: torch.Tensor, bias: torch.Tensor) -> None:
    """PyTorch's ``nn.Linear`` default: U(±1/sqrt(fan_in)) for weight and bias."""
    bound = 1.0 / math.sqrt(weight.shape[-2])
    with torch.no_grad():
        weight.uniform_(-bound, bound)
        bias.uniform_(-bound, bound)


class Linear(nn.Module):
    """A linear layer shared by all items: ``x @ W + b`` with ``W`` of shape ``(in, out)``.

    Input ``(..., in)``; all items' points go through one matrix product.
    """

    def __init__(self, in_features: int, out_features: int, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype))
        _default_uniform_(self.weight, self.bias)

    def forward(self, x: torch.Tensor, omega: float | None = None) -> torch.Tensor:
        """``x @ W + b``; with ``omega``, ``omega * (x @ W + b)`` in the same product."""
        if x.is_cuda and self.in_features <= EXACT_FAN_IN:
            return _exact_small_fan_in(x, self.weight, self.bias, omega)
        out = affine(x.reshape(-1, self.in_features), self.weight, self.bias, omega)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, shared"


class BatchedLinear(nn.Module):
    """N independent linear layers applied as one batched product.

    Weight ``(N, in, out)``, bias ``(N, out)``; input ``(N, P, in)`` gives ``(N, P, out)``.
    Item ``i`` sees exactly ``x[i] @ W[i] + b[i]``, as an ``nn.Linear`` of its own would.
    """

    def __init__(
        self, n_items: int, in_features: int, out_features: int, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.n_items, self.in_features, self.out_features = n_items, in_features, out_features
        self.weight = nn.Parameter(torch.empty(n_items, in_features, out_features, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(n_items, out_features, dtype=dtype))
        _default_uniform_(self.weight, self.bias)
        self._gathered: tuple[torch.Tensor, ...] | None = None

    @contextlib.contextmanager
    def gathered(self, items: torch.Tensor) -> Iterator[None]:
        """Use the rows ``items`` for every forward pass in the block: one gather, one scatter.

        Selecting rows in every chunk's forward pass costs a copy of the whole ``(N, in, out)``
        weight per chunk, and its backward a zero-filled gradient of the same size; with many
        items and small chunks that costs more than the chunk's products. Here the rows are
        copied once into leaf tensors, their gradients accumulate over the block's chunks and
        are added into ``weight.grad`` once at the end.
        """
        with _gathered_rows(self, (self.weight, self.bias), items):
            yield

    def forward(self, x: torch.Tensor, items: torch.Tensor | None = None, omega: float | None = None) -> torch.Tensor:
        """``items`` (indices into N) selects which items' weights the rows of ``x`` use; with
        ``omega``, the result is ``omega * (x @ W + b)``, scaled in the same product. One item
        in the block is a plain 2-d product (a batch-1 ``bmm`` runs far below a GEMM's rate)."""
        weight: torch.Tensor = self.weight
        bias: torch.Tensor = self.bias
        if self._gathered is not None:  # inside gathered(items): the rows were selected once
            weight, bias = self._gathered
        elif items is not None:
            weight, bias = weight.index_select(0, items), bias.index_select(0, items)
        if x.dim() != 3 or x.shape[0] != weight.shape[0]:
            raise ValueError(f"expected input (N={weight.shape[0]}, P, {self.in_features}), got {tuple(x.shape)}")
        if x.is_cuda and self.in_features <= EXACT_FAN_IN:
            return _exact_small_fan_in(x, weight.unsqueeze(1), bias.unsqueeze(1), omega)
        if x.shape[0] == 1:
            return affine(x[0], weight[0], bias[0], omega).unsqueeze(0)
        return affine(x, weight, bias.unsqueeze(1), omega)

    @classmethod
    def from_linears(cls, linears: Sequence[nn.Linear]) -> BatchedLinear:
        """Stack ``nn.Linear`` layers (weight ``(out, in)``) into one batched layer."""
        first = linears[0]
        layer = cls(len(linears), first.in_features, first.out_features, dtype=first.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(torch.stack([lin.weight.t() for lin in linears]))
            layer.bias.copy_(torch.stack([lin.bias for lin in linears]))
        return layer

    def extra_repr(self) -> str:
        return f"items={self.n_items}, in={self.in_features}, out={self.out_features}"


class LowRankBatchedLinear(nn.Module):
    """N per-item layers of rank ``r``: item ``i`` computes ``x @ (U_i @ V_i) + b_i``.

    ``U`` ``(N, in, r)``, ``V`` ``(N, r, out)``, bias ``(N, out)``: ``r * (in + out) + out``
    numbers per item instead of ``in * out + out``, applied as two batched products (``x U``,
    then ``(x U) V``; the weight is never formed). Why: MINR's per-item projection holds 97.7%
    of an item's parameters at width 256; a rank-16 one holds 12.5% of that.
    """

    def __init__(
        self, n_items: int, in_features: int, out_features: int, rank: int, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"a low-rank layer needs rank >= 1, got {rank}")
        self.n_items, self.in_features, self.out_features, self.rank = n_items, in_features, out_features, rank
        self.u = nn.Parameter(torch.empty(n_items, in_features, rank, dtype=dtype))
        self.v = nn.Parameter(torch.empty(n_items, rank, out_features, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(n_items, out_features, dtype=dtype))
        _default_uniform_(self.u, self.bias)
        _default_uniform_(self.v, self.bias)
        self._gathered: tuple[torch.Tensor, ...] | None = None

    @property
    def weight(self) -> torch.Tensor:
        """Every item's full weight ``U @ V`` ``(N, in, out)``, formed on demand (for analysis)."""
        return torch.bmm(self.u, self.v)

    def init_(self, activation: Activation, layer: LayerDef) -> None:
        """The activation's initialisation, matched in spread: the biases as the activation sets
        them, and ``U``, ``V`` uniform, scaled alike so that ``U_i @ V_i`` has the root mean
        square (for zero-mean weights, the standard deviation) of the full weight the activation
        would draw (one item's, drawn on the CPU for reference; works when the layer lives on
        the meta device). A sum of ``r`` products is not uniform, but the layer's outputs, which
        sum over its inputs, see the variance they would see with the full weight."""
        reference = torch.empty(1, self.in_features, self.out_features, dtype=self.u.dtype, device="cpu")
        activation.init_layer_(reference, self.bias, layer)
        # U(-1, 1) has variance 1/3 per real part: an entry of U V sums r products.
        parts = 2 if self.u.is_complex() else 1
        product_std = math.sqrt(self.rank) * parts / 3.0
        spread = float(reference.abs().square().mean().sqrt())  # root mean square: defined for one weight too
        scale = math.sqrt(spread / product_std)
        with torch.no_grad():
            self.u.uniform_(-scale, scale)
            self.v.uniform_(-scale, scale)

    def init_delta_(self) -> None:
        """As a per-item delta on a shared layer (LoRA, Hu et al. 2021): ``V`` and the bias zero,
        so every item starts from the shared layer, and ``U`` PyTorch's default uniform, so that
        ``V``'s gradient is not zero."""
        with torch.no_grad():
            bound = 1.0 / math.sqrt(self.in_features)
            self.u.uniform_(-bound, bound)
            self.v.zero_()
            self.bias.zero_()

    @contextlib.contextmanager
    def gathered(self, items: torch.Tensor) -> Iterator[None]:
        """As :meth:`BatchedLinear.gathered`: the rows of ``U``, ``V`` and the bias selected once."""
        with _gathered_rows(self, (self.u, self.v, self.bias), items):
            yield

    def forward(self, x: torch.Tensor, items: torch.Tensor | None = None, omega: float | None = None) -> torch.Tensor:
        """As :meth:`BatchedLinear.forward`; ``omega`` rides in the second product."""
        u: torch.Tensor = self.u
        v: torch.Tensor = self.v
        bias: torch.Tensor = self.bias
        if self._gathered is not None:
            u, v, bias = self._gathered
        elif items is not None:
            u, v, bias = u.index_select(0, items), v.index_select(0, items), bias.index_select(0, items)
        if x.dim() != 3 or x.shape[0] != u.shape[0]:
            raise ValueError(f"expected input (N={u.shape[0]}, P, {self.in_features}), got {tuple(x.shape)}")
        if x.is_cuda and self.in_features <= EXACT_FAN_IN:  # a few inputs: the small weight, exact
            return _exact_small_fan_in(x, torch.bmm(u, v).unsqueeze(1), bias.unsqueeze(1), omega)
        if x.shape[0] == 1:
            return affine(torch.mm(x[0], u[0]), v[0], bias[0], omega).unsqueeze(0)
        return affine(torch.bmm(x, u), v, bias.unsqueeze(1), omega)

    def extra_repr(self) -> str:
        return f"items={self.n_items}, in={self.in_features}, out={self.out_features}, rank={self.rank}"


class MultiINR(nn.Module):
    """An MLP for N items whose layers are each either shared or per item.

    Implements the :class:`~inrkit.interfaces.INRModel` protocol: parameters live under
    ``shared.<layer>`` or ``items.<layer>`` (leading dimension N). Strategies that remap
    coordinates (a canvas, an appended item index) override :meth:`map_coords`; strategies that
    condition layers per item override :meth:`modulate`; strategies with their own optimisation
    override :meth:`training_step` and declare it in ``capabilities``.
    """

    #: What the trainer may do with this model (see :class:`~inrkit.interfaces.ModelCapabilities`).
    capabilities: ModelCapabilities = ModelCapabilities()

    def __init__(self, activation: Activation, spec: ModelSpec, layers: Sequence[LayerDef]) -> None:
        super().__init__()
        if not layers or layers[-1].position != "last":
            raise ValueError("a MultiINR needs at least one layer and must end with a 'last' layer")
        self.activation = activation
        self.spec = spec
        self.layer_defs = tuple(layers)
        self.shared = nn.ModuleDict()
        self.items = nn.ModuleDict()
        for d in self.layer_defs:
            dtype = activation.layer_dtype(d.position)
            if d.shared:
                module: Linear | BatchedLinear = Linear(d.in_features, d.out_features, dtype=dtype)
                self.shared[d.name] = module
            elif d.rank is not None:
                low = LowRankBatchedLinear(spec.n_items, d.in_features, d.out_features, d.rank, dtype=dtype)
                self.items[d.name] = low
                low.init_(activation, d)
                continue
            else:
                module = BatchedLinear(spec.n_items, d.in_features, d.out_features, dtype=dtype)
                self.items[d.name] = module
            activation.init_layer_(module.weight, module.bias, d)
            if d.shared and d.rank is not None:  # each item's low-rank delta on the shared weight (LoRA)
                delta = LowRankBatchedLinear(spec.n_items, d.in_features, d.out_features, d.rank, dtype=dtype)
                delta.init_delta_()
                self.items[d.name] = delta
        #: Each layer's ``f(omega * z)`` form or ``None`` (see :meth:`_scaled_forms`): a plain
        #: dict read in every forward pass, so ``torch.compile`` traces through it.
        self.scaled_forms = self._scaled_forms()

    @property
    def n_items(self) -> int:
        return self.spec.n_items

    def map_coords(self, coords: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Coordinates ``(N, P, in_dim)`` as the network's first layer sees them."""
        return coords

    def forward(self, coords: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, P, in_dim)`` coordinates in [-1, 1] to ``(N, P, out_dim)`` values in about [-1, 1].

        ``items`` optionally names which of the model's items the N rows belong to (a subset, in
        any order); by default row ``i`` is item ``i``. Under ``torch.autocast`` only the hidden
        layers' products run in low precision.
        """
        x = self.activation.encode(self.map_coords(coords, items))
        mixed = torch.is_autocast_enabled(x.device.type)
        for d in self.layer_defs:
            form = None if mixed else self.scaled_forms[d.name]  # None for the last layer
            if mixed:
                # Under autocast only hidden layers' products run in low precision: coordinates
                # and outputs need float32's resolution, and sin(30 x) of a bf16 x is mostly noise.
                dtype = torch.get_autocast_dtype(x.device.type)
                with torch.autocast(x.device.type, dtype=dtype, enabled=d.position == "hidden"):
                    x = self._layer(d, x, items)
                if x.dtype in (torch.bfloat16, torch.float16):
                    x = x.float()
            elif form is not None:  # f(omega * z): omega rides in the product
                x = form[1](self._layer(d, x, items, form[0]))
                continue
            else:
                x = self._layer(d, x, items)
            if d.position != "last":
                x = self.activation.activate_layer(self.modulate(d, x, items), d)
        return x.real if x.is_complex() else x  # complex networks (WIRE) output the real part

    def modulate(self, layer: LayerDef, z: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        """The pre-activation ``z`` (``(N, P, width)``, float32 or complex) of an activated layer,
        as the activation sees it; ``items`` as in :meth:`forward`.

        The identity here. A strategy that conditions a shared network per item (FiLM's
        ``gamma_i * z + beta_i``, shift modulations) overrides it instead of the forward pass, so
        the autocast scoping and coordinate mapping stay :class:`MultiINR`'s.
        """
        return z

    def _layer(self, d: LayerDef, x: torch.Tensor, items: torch.Tensor | None, omega: float | None = None) -> torch.Tensor:
        if d.name in self.items:
            out = self.items[d.name](x, items, omega)
            if d.name in self.shared:  # a shared layer with per-item deltas
                out = out + self.shared[d.name](x, omega)
            return out
        return self.shared[d.name](x, omega)

    def _scaled_forms(self) -> dict[str, ScaledForm | None]:
        """Each activated layer's ``f(omega * z)`` form (:meth:`Activation.scaled_form`), or
        ``None`` where the activation declares none, where a strategy modulates the
        pre-activation (:meth:`modulate` overridden: ``omega`` cannot move past it), or where
        the layer is complex."""
        plain = type(self).modulate is MultiINR.modulate
        forms: dict[str, ScaledForm | None] = {}
        for d in self.layer_defs:
            complex_layer = self.activation.layer_dtype(d.position) in (torch.complex64, torch.complex128)
            form = self.activation.scaled_form(d) if plain and not complex_layer and d.position != "last" else None
            forms[d.name] = form
        return forms

    @contextlib.contextmanager
    def select_items(self, items: torch.Tensor | None) -> Iterator[None]:
        """Select the per-item layers' rows for ``items`` once for a run of forward passes (see
        :meth:`BatchedLinear.gathered`); ``None`` (every item, in order) selects nothing."""
        with contextlib.ExitStack() as stack:
            if items is not None:
                for module in self.items.values():
                    if isinstance(module, (BatchedLinear, LowRankBatchedLinear)):
                        stack.enter_context(module.gathered(items))
            yield

    def training_step(self, step: TrainingStep) -> torch.Tensor:
        """One step's gradients: the trainer's chunked loss-and-backward loop."""
        return step.accumulate()

    def prepare_evaluation(self, step: TrainingStep) -> None:
        """Nothing to prepare: every per-item parameter is trained by the optimiser."""


def mlp_layer_defs(
    spec: ModelSpec,
    activation: Activation,
    shared_hidden: Sequence[bool],
    projection: bool = False,
    *,
    in_dim: int | None = None,
    share_ends: bool = False,
    projection_rank: int | None = None,
    projection_shared: bool = False,
) -> list[LayerDef]:
    """Layer list of a plain (``layers``-deep) MLP, optionally with a per-item projection layer.

    ``shared_hidden[k]`` says whether hidden layer ``k`` (the paper's layer ``k + 2``) is shared;
    the first and last layers are always per item. The projection layer, when present, is a
    per-item hidden layer inserted right after the first layer (MINR's Eq. 2). The input width
    and hidden width come from the activation (coordinate encodings, complex layers); ``in_dim``
    overrides the coordinate count (an appended item index), ``share_ends`` shares the first and
    last layers too (one network for all items), ``projection_rank`` makes the projection layer
    low-rank (:class:`LowRankBatchedLinear`), or, with ``projection_shared``, a shared layer with
    per-item rank-``projection_rank`` deltas.
    """
    n_hidden = spec.layers - 2
    if len(shared_hidden) != n_hidden:
        raise ValueError(f"expected {n_hidden} sharing flags, got {len(shared_hidden)}")
    in_features = activation.encoded_dim(spec.in_dim if in_dim is None else in_dim)
    w = activation.hidden_width(spec.width)
    defs = [LayerDef("first", in_features, w, "first", shared=share_ends)]
    if projection:
        defs.append(LayerDef("projection", w, w, "hidden", shared=projection_shared, projection=True, rank=projection_rank))
    for k, shared in enumerate(shared_hidden):
        defs.append(LayerDef(f"hidden{k + 2}", w, w, "hidden", shared=shared))
    defs.append(LayerDef("last", w, spec.out_dim, "last", shared=share_ends))
    return defs


def _real_numel(t: torch.Tensor) -> int:
    return t.numel() * (2 if t.is_complex() else 1)


def count_parameters(model: INRModel) -> ParamCounts:
    """Exact counts from the model's layout; a complex number counts as two real parameters."""
    shared = sum(_real_numel(p) for p in model.shared.parameters())
    per_item_total = sum(_real_numel(p) for p in model.items.parameters())
    per_item = per_item_total // max(model.n_items, 1)
    return ParamCounts(total=shared + per_item_total, shared=shared, per_item=per_item)


def validate_model(model: object, strategy: str, spec: ModelSpec) -> INRModel:
    """Check that a strategy's model follows the :class:`~inrkit.interfaces.INRModel` layout.

    Raises :class:`~inrkit.errors.PluginError` naming the strategy and what is wrong: not an
    ``nn.Module``, a missing protocol member, capabilities that are not data, a parameter
    outside ``shared``/``items``, or a per-item tensor without one row per item.
    """
    where = f"sharing strategy {strategy!r}"
    if not isinstance(model, nn.Module):
        raise PluginError(f"{where} returned {type(model).__name__}, not a torch.nn.Module")
    missing = inr_model_gaps(model)
    if missing:
        raise PluginError(f"{where} returned {type(model).__name__}, which lacks {', '.join(missing)} (see inrkit.interfaces.INRModel)")
    model = cast(INRModel, model)
    if not isinstance(model.capabilities, ModelCapabilities):
        raise PluginError(f"{where}: {type(model).__name__}.capabilities must be an inrkit.interfaces.ModelCapabilities")
    if not isinstance(model.shared, nn.ModuleDict) or not isinstance(model.items, nn.ModuleDict):
        raise PluginError(f"{where}: 'shared' and 'items' must be torch.nn.ModuleDict")
    grouped = {id(p) for p in model.shared.parameters()} | {id(p) for p in model.items.parameters()}
    loose = [name for name, p in model.named_parameters() if id(p) not in grouped]
    if loose:
        raise PluginError(f"{where} keeps parameters outside 'shared'/'items': {', '.join(loose)}")
    if model.n_items != spec.n_items:
        raise PluginError(f"{where}: the model holds {model.n_items} items, the spec asked for {spec.n_items}")
    for name, p in model.items.named_parameters():
        if p.dim() == 0 or p.shape[0] != spec.n_items:
            raise PluginError(
                f"{where}: per-item parameter items.{name} has shape {tuple(p.shape)}; its first "
                f"dimension must be the number of items ({spec.n_items})"
            )
    return model


# -- a model's tensors: their size, and whether others fit them -------------------------------------
def state_bytes(model: INRModel) -> int:
    """Bytes of a model's tensors (works on the meta device, where nothing is allocated)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def trainable_bytes(model: INRModel) -> int:
    """Bytes of a model's trainable parameters: each has a gradient and two Adam moments of this size."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def _kind(tensor: torch.Tensor) -> str:
    return "complex" if tensor.is_complex() else "float" if tensor.is_floating_point() else "other"


def check_state(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], source: str, hint: str = "") -> None:
    """Refuse tensors that do not fit a model: missing or unexpected keys, other shapes, real for
    complex. One line naming ``source``, the first mismatch and how many there are."""
    problems: list[str] = []
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing:
        problems.append(f"missing tensor(s) {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
    if unexpected:
        problems.append(f"unexpected tensor(s) {', '.join(unexpected[:3])}" + (" ..." if len(unexpected) > 3 else ""))
    for key, want in expected.items():
        got = found.get(key)
        if got is None:
            continue
        if not isinstance(got, torch.Tensor):
            problems.append(f"{key} is not a tensor")
        elif tuple(got.shape) != tuple(want.shape):
            problems.append(f"{key} has shape {tuple(got.shape)}, the run's config builds {tuple(want.shape)}")
        elif _kind(got) != _kind(want):
            problems.append(f"{key} has dtype {got.dtype}, the run's config builds {want.dtype}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CheckpointError(f"{source} does not match the model its config builds: {problems[0]}{more}{hint}")
