"""Quantisation-aware fine-tuning: train a finished run's model through its own quantisation.

The steps are chosen once, from the trained weights, exactly as post-training quantisation
chooses them (per tensor, per item row of a per-item tensor, per channel if asked), and then held
fixed. Each step evaluates the loss and its gradient at the *quantised* weights and applies the
gradient to the float weights (the straight-through estimator, as in COIN++ and Strümpler et al.
2022), so the float weights move to where their rounding fits the data. The file is then written
with those very steps: what was trained is what is stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from inrkit.interfaces import INRModel
from inrkit.points import PointSet
from inrkit.quantize import choose_steps, levels
from inrkit.train import ChunkedStep, Trainer

#: The fine-tuning learning rate is the run's divided by this, unless given.
LR_DIVISOR = 10.0


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


def finetune(
    model: INRModel, arrays: Sequence[np.ndarray], bits: Mapping[str, int], steps: Mapping[str, np.ndarray], *,
    n_steps: int, lr: float, device: torch.device,
) -> list[float]:
    """``n_steps`` straight-through Adam steps of ``model`` on ``arrays`` (the items' training
    views) at the quantisation ``steps``; returns the loss after each step. The model ends with
    its float weights (quantise them with the same ``steps`` to store them)."""
    model.to(device)
    model.train()
    # Every quantised parameter is rounded in the forward pass; only the trainable ones move (the
    # shared layers of an encoded run stay the decoder they were encoded against).
    params = [(name, p) for name, p in model.named_parameters() if name in bits]
    grids = [(p, _step_tensor(steps[name], p, name.startswith("items.")), levels(bits[name])) for name, p in params]
    optimizer = torch.optim.Adam([p for _, p in params if p.requires_grad], lr=lr)
    points = PointSet.from_arrays(list(arrays)).to(device)
    chunks = Trainer(device=device).plan_chunks(points, model)
    step = ChunkedStep(model, points, chunks)
    losses = []
    for _ in range(n_steps):
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            floats = [p.detach().clone() for p, _, _ in grids]
            for p, s, limit in grids:
                p.copy_(_round(p, s, limit))
        per_item = model.training_step(step)  # gradients at the quantised weights
        with torch.no_grad():
            for (p, _, _), saved in zip(grids, floats, strict=True):
                p.copy_(saved)
        optimizer.step()  # ... applied to the float weights
        losses.append(float(per_item.detach().mean()))
    model.eval()
    return losses
