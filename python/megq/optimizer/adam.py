"""Adam and AdamW."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from ..tensor import Tensor
from .optimizer import Optimizer, ParamsArg

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` is added to the gradient (L2)."""

    _decoupled = False

    def __init__(self, params: ParamsArg, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        self._check_positive("lr", lr)
        self._check_positive("weight_decay", weight_decay)
        if eps <= 0:
            raise ValueError(f"{type(self).__name__}: eps must be positive, got {eps}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _update(self, p: Tensor, grad: np.ndarray, state: Dict[str, np.ndarray], group: Dict[str, Any]) -> None:
        data = p.numpy()
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if wd and self._decoupled:
            data *= 1 - lr * wd
        elif wd:
            grad = grad + wd * data
        if "exp_avg" not in state:
            state["step"] = np.zeros((), np.int64)
            state["exp_avg"] = np.zeros_like(data)
            state["exp_avg_sq"] = np.zeros_like(data)
        state["step"] += 1
        t = int(state["step"])
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * grad
        v *= b2
        v += (1 - b2) * grad * grad
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        data -= (lr * m_hat / (np.sqrt(v_hat) + eps)).astype(data.dtype, copy=False)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p *= 1 - lr * weight_decay`` before the step."""

    _decoupled = True

    def __init__(self, params: ParamsArg, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)
