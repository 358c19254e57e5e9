"""What happens inside a model, layer by layer: pre-activations, activations, living units, gradients.

Why a backbone trains well or badly under a sharing strategy is visible in its layers: how large
the pre-activations entering each nonlinearity are (a Gaussian or Gabor envelope ``exp(-(s z)^2)``
is zero for ``|s z|`` beyond about 3), how many units still respond somewhere in the image, and
how large each layer's gradient is. :func:`layer_statistics` measures all of it for any
:class:`~inrkit.nn.MultiINR`-style model (one with ``layer_defs``) on given coordinates; the
``inrkit analyze activations`` command and the ``activations`` callback report it for a run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch

from inrkit.interfaces import INRModel

if TYPE_CHECKING:
    from inrkit.runs.folder import Run

#: An activation value at or below this magnitude counts as dead (no signal, no gradient through
#: a Gaussian or Gabor envelope; a ReLU's zero).
DEAD_BELOW = 1e-3


@dataclasses.dataclass(frozen=True)
class Summary:
    """Statistics of a tensor's values (complex values: of their magnitude, and the real part's sign)."""

    mean: float
    std: float
    abs_mean: float
    abs_p99: float

    @classmethod
    def of(cls, values: torch.Tensor) -> Summary:
        flat = values.detach().reshape(-1)
        magnitude = flat.abs().float()
        real = flat.real.float() if flat.is_complex() else flat.float()
        sample = magnitude if magnitude.numel() <= 1_000_000 else magnitude[:: magnitude.numel() // 1_000_000 + 1]
        return cls(
            mean=float(real.mean()), std=float(real.std()) if real.numel() > 1 else 0.0,
            abs_mean=float(magnitude.mean()), abs_p99=float(torch.quantile(sample, 0.99)),
        )


@dataclasses.dataclass(frozen=True)
class LayerStatistics:
    """One linear layer and the nonlinearity after it, measured on a set of points."""

    layer: str
    position: str
    shared: bool
    in_features: int
    out_features: int
    #: The layer's output, which the activation sees (after any per-item modulation).
    pre_activation: Summary
    #: The activation's output (``None`` for the last, linear layer).
    activation: Summary | None
    #: Fraction of (point, unit) pairs whose activation is alive (magnitude above ``DEAD_BELOW``).
    alive_fraction: float | None
    #: Fraction of units that are dead at every measured point (of every item).
    dead_units: float | None
    #: Mean absolute weight.
    weight_abs_mean: float
    #: Norm of the weight's gradient (and bias's) when the model holds gradients.
    grad_norm: float | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _modules(model: INRModel, name: str) -> Iterator[torch.nn.Module]:
    for group in (model.shared, model.items):
        if name in group:
            yield group[name]


def layer_statistics(model: INRModel, coords: torch.Tensor, items: torch.Tensor | None = None) -> list[LayerStatistics]:
    """Statistics of every layer of ``model`` on ``coords`` (``(N, P, in_dim)``, as its forward).

    The model must list its layers in ``layer_defs`` (:class:`~inrkit.nn.MultiINR` and its
    subclasses). Gradient norms are read from ``.grad`` where a backward pass left them.
    """
    defs = getattr(model, "layer_defs", None)
    if not defs:
        raise TypeError(f"{type(model).__name__} has no layer_defs: only MultiINR-style models can be measured")
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for d in defs:
        for module in _modules(model, d.name):
            handles.append(module.register_forward_hook(lambda mod, args, out, name=d.name: outputs.__setitem__(name, out)))
    try:
        with torch.no_grad():
            model(coords, items)
    finally:
        for handle in handles:
            handle.remove()
    activation = model.activation
    stats = []
    forms = getattr(model, "scaled_forms", {})
    for d in defs:
        z = outputs[d.name]
        form = forms.get(d.name)
        if form is not None:  # the layer's product carried omega (MultiINR.scaled_forms): z is its output / omega
            z = z / form[0]
        module = next(_modules(model, d.name))
        weight = cast(torch.Tensor, module.weight)
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        grad_norm = float(torch.stack([(g.abs() ** 2).sum() for g in grads]).sum().sqrt()) if grads else None
        act_summary = alive = dead_units = None
        if d.position != "last":
            modulate = getattr(model, "modulate", None)
            with torch.no_grad():
                z = modulate(d, z, items) if modulate is not None else z
                a = activation.activate_layer(z, d)
            act_summary = Summary.of(a)
            living = a.abs() > DEAD_BELOW  # (N, P, units)
            alive = float(living.float().mean())
            dead_units = float((~living.reshape(-1, living.shape[-1]).any(dim=0)).float().mean())
        stats.append(
            LayerStatistics(
                layer=d.name, position=d.position, shared=d.shared, in_features=d.in_features,
                out_features=d.out_features, pre_activation=Summary.of(z), activation=act_summary,
                alive_fraction=alive, dead_units=dead_units, weight_abs_mean=float(weight.detach().abs().float().mean()),
                grad_norm=grad_norm,
            )
        )
    return stats


def sample_coords(shapes: Sequence[Sequence[int]], points: int = 4096, seed: int = 0) -> torch.Tensor:
    """``(N, points, in_dim)`` coordinates drawn uniformly from each item's pixel-centre grid."""
    from inrkit.coords import grid

    generator = torch.Generator().manual_seed(seed)
    rows = []
    for shape in shapes:
        full = grid(shape)
        pick = torch.randint(0, full.shape[0], (min(points, full.shape[0]),), generator=generator)
        rows.append(full[pick])
    length = min(r.shape[0] for r in rows)
    return torch.stack([r[:length] for r in rows])


def _from_dict(row: dict[str, Any]) -> LayerStatistics:
    fields = dict(row)
    fields["pre_activation"] = Summary(**fields["pre_activation"])
    fields["activation"] = Summary(**fields["activation"]) if fields["activation"] else None
    return LayerStatistics(**fields)


def format_table(stats: Sequence[LayerStatistics | dict[str, Any]]) -> str:
    """A text table of the statistics (or their ``as_dict`` forms), one row per layer."""
    header = f"{'layer':<11} {'kind':<9} {'|z| mean':>9} {'|z| p99':>9} {'|a| mean':>9} {'alive':>7} {'dead units':>10} {'|W| mean':>9} {'grad':>9}"
    lines = [header, "-" * len(header)]
    for row in stats:
        s = row if isinstance(row, LayerStatistics) else _from_dict(row)
        kind = "shared" if s.shared else "per-item"

        def num(value: float | None, fmt: str = ".3g") -> str:
            return "-" if value is None else format(value, fmt)

        lines.append(
            f"{s.layer:<11} {kind:<9} {num(s.pre_activation.abs_mean):>9} {num(s.pre_activation.abs_p99):>9} "
            f"{num(s.activation.abs_mean if s.activation else None):>9} {num(s.alive_fraction, '.1%'):>7} "
            f"{num(s.dead_units, '.1%'):>10} {num(s.weight_abs_mean):>9} {num(s.grad_norm):>9}"
        )
    return "\n".join(lines)


def activation_report(run: Run, points: int = 2048, gradients: bool = True) -> dict[str, Any]:
    """Layer statistics of a run's model at initialisation (rebuilt from its seed) and trained.

    With ``gradients``, one training step's gradients on the run's own data (its ``data`` paths,
    loaded again) are measured too; when the data cannot be loaded the report says why and leaves
    them out.
    """
    from inrkit.config import ResolvedRun
    from inrkit.errors import InrkitError
    from inrkit.factory import build_model, run_spec
    from inrkit.training.points import PointSet
    from inrkit.training.trainer import ChunkedStep

    resolved = ResolvedRun(run.config)
    shapes = [tuple(int(n) for n in it["shape"]) for it in run.items]
    torch.manual_seed(run.config.train.seed)  # the initialisation the run started from
    spec = run_spec(run.config, resolved.signal.in_dim, shapes, int(run.items[0]["channels"]))
    models = {"init": build_model(resolved.activation, resolved.sharing, spec), "trained": run.model()}
    note = None
    if gradients:
        try:
            items = resolved.signal.load(run.config.data)
            arrays = [resolved.signal.train_view(item) for item in items]
            if [a.shape[:-1] for a in arrays] != shapes:
                raise InrkitError("the run's data no longer has the shapes it was trained on")
        except InrkitError as exc:
            note = f"gradients left out: {exc}"
        else:
            data = PointSet.from_arrays(arrays)
            for model in models.values():
                model.training_step(ChunkedStep(model, data, data.chunks(max(1, 8192 // len(arrays)))))
    coords = sample_coords(shapes, points)
    report: dict[str, Any] = {"run": str(run.path), "points_per_item": coords.shape[1], "note": note}
    for label, model in models.items():
        report[label] = [s.as_dict() for s in layer_statistics(model, coords)]
    return report
