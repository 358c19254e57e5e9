"""Quantisation-aware fine-tuning: train a finished run's model through its own quantisation.

The steps are chosen once, from the trained weights, exactly as post-training quantisation
chooses them (per tensor, per item row of a per-item tensor, per channel if asked), and then held
fixed; the file is written with those very steps, so what was trained is what is stored.

Two phases, with the learning rate decayed to zero on a cosine:

1. **Additive noise** (the first :data:`NOISE_FRACTION` of the steps): the loss and its gradient
   are taken at the weights plus uniform noise of one step's width, the smooth proxy for rounding
   of Ballé et al. 2017 and C3 (Kim et al. 2024). The weights learn to tolerate their rounding
   error without the jumps of hard rounding.
2. **Straight-through** (the rest): the loss and its gradient are taken at the *rounded* weights
   and applied to the float weights (as in COIN++ and Strümpler et al. 2022), so they settle where
   their rounding fits the data.

Every straight-through step measures the rounded model's loss, and the float weights whose
rounding had the least loss are kept, the untouched start (plain post-training quantisation)
included: fine-tuning never returns a model whose rounding fits the training data worse.

Measured on 16 Kodak photos at 128 px over three seeds (``benchmarks/RESULTS.md``):
straight-through alone at a fixed learning rate lost up to 0.6 dB for MINR at 6 bits, because the
jumps of hard rounding in the shared layers disturb every item at once; the two phases gain
0.4-0.5 dB for MINR and 0.6-0.75 dB for separate SIRENs at 6 bits over plain quantisation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from inrkit.codec.quantize import choose_steps, levels
from inrkit.interfaces import INRModel
from inrkit.training.points import PointSet
from inrkit.training.trainer import ChunkedStep, Trainer

#: The fine-tuning learning rate is the run's divided by this, unless given: the cosine decay and
#: the noise phase make the run's own rate safe (a tenth of it learned too little in 100 steps).
LR_DIVISOR = 1.0
#: The share of the steps trained with additive noise before the straight-through phase.
NOISE_FRACTION = 0.7


@dataclasses.dataclass
class FineTuning:
    """What :func:`finetune` did: the rounded model's mean loss before, at every
    straight-through step, and at the kept weights (``kept_step``: 0 for the start, else the
    number of steps taken before the kept weights)."""

    start_loss: float
    losses: list[float]
    kept_step: int
    kept_loss: float


def fixed_steps(model: INRModel, bits: Mapping[str, int], per_channel: bool) -> dict[str, np.ndarray]:
    """Each quantised parameter's step(s), chosen from its current values: shared keys ``(k,)``,
    per-item keys ``(N, k)`` (one row per item), ``k`` 1 or the channel count."""
    out: dict[str, np.ndarray] = {}
    for name, p in model.named_parameters():
        if name not in bits:
            continue
        values = p.detach().cpu().numpy()
        if name.startswith("items."):
            out[name] = np.stack([choose_steps(values[i], bits[name], per_channel) for i in range(values.shape[0])])
        else:
            out[name] = choose_steps(values, bits[name], per_channel)
    return out


def _step_tensor(steps: np.ndarray, param: torch.Tensor, per_item: bool) -> torch.Tensor:
    """``steps`` shaped to broadcast over ``param`` (its real view for complex parameters)."""
    real_ndim = param.dim() + (1 if param.is_complex() else 0)
    shape = [1] * real_ndim
    if per_item:
        shape[0] = steps.shape[0]
    if steps.shape[-1] > 1:  # per channel: the last axis of the values
        shape[real_ndim - (2 if param.is_complex() else 1)] = steps.shape[-1]
    return torch.from_numpy(np.ascontiguousarray(steps, dtype=np.float32)).reshape(shape).to(param.device)


@torch.no_grad()
def _round(param: torch.Tensor, step: torch.Tensor, limit: int) -> torch.Tensor:
    real = torch.view_as_real(param) if param.is_complex() else param
    q = torch.clamp(torch.round(real / step), -limit, limit) * step
    return torch.view_as_complex(q.contiguous()) if param.is_complex() else q


@torch.no_grad()
def _perturb(param: torch.Tensor, step: torch.Tensor, limit: int, generator: torch.Generator) -> torch.Tensor:
    """The values clipped to the grid's range plus uniform noise of one step's width."""
    real = torch.view_as_real(param) if param.is_complex() else param
    noise = torch.rand(real.shape, generator=generator, device=real.device) - 0.5
    q = torch.maximum(torch.minimum(real, limit * step), -limit * step) + noise * step
    return torch.view_as_complex(q.contiguous()) if param.is_complex() else q


def finetune(
    model: INRModel, arrays: Sequence[np.ndarray], bits: Mapping[str, int], steps: Mapping[str, np.ndarray], *,
    n_steps: int, lr: float, device: torch.device, seed: int = 0,
) -> FineTuning:
    """``n_steps`` of fine-tuning of ``model`` on ``arrays`` (the items' training views) at the
    quantisation ``steps`` (see the module's docstring). The model ends with the kept float
    weights: quantise them with the same ``steps`` to store them."""
    model.to(device)
    model.train()
    # Every quantised parameter is rounded in the forward pass; only the trainable ones move (the
    # shared layers of an encoded run stay the decoder they were encoded against).
    params = [(name, p) for name, p in model.named_parameters() if name in bits]
    grids = [(p, _step_tensor(steps[name], p, name.startswith("items.")), levels(bits[name])) for name, p in params]
    optimizer = torch.optim.Adam([p for _, p in params if p.requires_grad], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * k / max(n_steps, 1))))
    points = PointSet.from_arrays(list(arrays)).to(device)
    chunks = Trainer(device=device).plan_chunks(points, model)
    step = ChunkedStep(model, points, chunks)
    generator = torch.Generator(device=device).manual_seed(seed)
    noisy_steps = int(NOISE_FRACTION * n_steps)
    start_loss, kept, kept_step, kept_loss = math.inf, [], 0, math.inf
    losses: list[float] = []
    # Step k's forward pass sees the weights after k updates; the last pass (k == n_steps) only
    # measures the final weights' rounding.
    for k in range(n_steps + 1):
        rounding = k >= noisy_steps or k == 0
        optimizer.zero_grad(set_to_none=True)
        floats = [p.detach().clone() for p, _, _ in grids]
        with torch.no_grad():
            for p, s, limit in grids:
                p.copy_(_round(p, s, limit) if rounding else _perturb(p, s, limit, generator))
        loss = float(model.training_step(step).detach().mean())  # gradients at the rounded/noisy weights
        with torch.no_grad():
            for (p, _, _), saved in zip(grids, floats, strict=True):
                p.copy_(saved)
        if rounding:
            if k == 0:
                start_loss = loss
            else:
                losses.append(loss)
            if k == 0 or loss < kept_loss:  # the start is always a candidate
                kept, kept_step, kept_loss = floats, k, loss
        if k == n_steps:
            break
        optimizer.step()  # ... applied to the float weights
        schedule.step()
    with torch.no_grad():
        for (p, _, _), saved in zip(grids, kept, strict=True):
            p.copy_(saved)
    model.zero_grad(set_to_none=True)
    model.eval()
    return FineTuning(start_loss, losses, kept_step, kept_loss)
