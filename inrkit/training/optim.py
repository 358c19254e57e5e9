"""Adam for item mini-batches: per-item rows and their state move only when their item is drawn.

With ``train.items_per_step = K`` each step trains K of the N items. Plain Adam would still
move every item's rows (their moments keep pushing after the gradient is gone) and would count
one bias-correction step for all of them. :class:`LazyItemAdam` is Adam with "lazy" semantics
for the per-item parameters, as sparse embedding optimisers have it (TensorFlow's
``LazyAdam``, PyTorch's ``SparseAdam``):

- a per-item group (``item_rows=True``, parameters whose leading dimension is the item) updates
  only the rows in :attr:`LazyItemAdam.rows`: their moments, their parameters and their own
  step count, so the bias correction of row ``i`` uses how often item ``i`` was drawn;
- any other group (the shared layers, which get a gradient every step) is ordinary Adam.

Untouched rows stay bit for bit as they were. The per-row step counts are a state tensor of
shape ``(N,)`` (``item_step``), saved with the optimiser in snapshots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


def _real(t: torch.Tensor) -> torch.Tensor:
    """Complex tensors (WIRE) as their real view: Adam treats real and imaginary parts alike."""
    return torch.view_as_real(t) if t.is_complex() else t


class LazyItemAdam(torch.optim.Optimizer):
    """Adam whose ``item_rows`` groups update only the rows named in :attr:`rows` each step."""

    def __init__(
        self, params: Iterable[Any], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "item_rows": False})
        #: The rows (item indices, no repeats) drawn this step; set before each :meth:`step`.
        self.rows: torch.Tensor | None = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: dense groups' as usual, per-item groups' by zeroing the rows the
        last step drew (the only rows an item's own points give gradient to), so a step costs
        O(K) rows, not a fresh ``(N, ...)`` gradient per parameter."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["item_rows"] and self.rows is not None:
                    p.grad.index_fill_(0, self.rows, 0)
                elif set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("LazyItemAdam takes no closure")
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["item_rows"]:
                    if self.rows is None:
                        raise RuntimeError("LazyItemAdam.rows must name this step's items before step()")
                    self._rows_step(p, group, self.rows)
                else:
                    self._dense_step(p, group)

    def _state(self, p: torch.Tensor, rows: bool) -> dict[str, torch.Tensor]:
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
            shape = (p.shape[0],) if rows else ()
            state["item_step" if rows else "step"] = torch.zeros(shape, dtype=torch.float32, device=p.device)
        return state

    def _dense_step(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        state = self._state(p, rows=False)
        grad, m, v = _real(p.grad), _real(state["exp_avg"]), _real(state["exp_avg_sq"])  # type: ignore[arg-type]
        state["step"] += 1
        t = float(state["step"])
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (v / (1 - beta2**t)).sqrt_().add_(group["eps"])
        _real(p).addcdiv_(m, denom, value=-group["lr"] / (1 - beta1**t))

    def _rows_step(self, p: torch.Tensor, group: dict[str, Any], rows: torch.Tensor) -> None:
        beta1, beta2 = group["betas"]
        state = self._state(p, rows=True)
        data, m_all, v_all = _real(p), _real(state["exp_avg"]), _real(state["exp_avg_sq"])
        grad = _real(p.grad).index_select(0, rows)  # type: ignore[arg-type]
        t = state["item_step"].index_select(0, rows) + 1
        state["item_step"].index_copy_(0, rows, t)
        m = m_all.index_select(0, rows).lerp_(grad, 1 - beta1)
        v = v_all.index_select(0, rows).mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m_all.index_copy_(0, rows, m)
        v_all.index_copy_(0, rows, v)
        shape = (-1,) + (1,) * (grad.dim() - 1)
        correction1 = (1 - beta1**t).view(shape)
        correction2 = (1 - beta2**t).view(shape)
        update = (m / correction1) / ((v / correction2).sqrt_().add_(group["eps"]))
        data.index_copy_(0, rows, data.index_select(0, rows) - group["lr"] * update)
