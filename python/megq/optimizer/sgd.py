"""SGD with momentum, Nesterov and (L2) weight decay."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from ..tensor import Tensor
from .optimizer import Optimizer, ParamsArg

__all__ = ["SGD"]


class SGD(Optimizer):
    """``g = grad + weight_decay * p``; with momentum ``v = momentum * v + g`` and the step is ``v`` (or
    ``g + momentum * v`` with ``nesterov``); ``p -= lr * step`` (MegEngine/PyTorch semantics)."""

    def __init__(self, params: ParamsArg, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            self._check_positive(name, v)
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov requires momentum > 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))

    def _update(self, p: Tensor, grad: np.ndarray, state: Dict[str, np.ndarray], group: Dict[str, Any]) -> None:
        data = p.numpy()
        g = grad + group["weight_decay"] * data if group["weight_decay"] else grad
        mom = group["momentum"]
        if mom:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, dtype=data.dtype)
            else:
                buf *= mom
                buf += g
            g = g + mom * buf if group["nesterov"] else buf
        data -= (group["lr"] * g).astype(data.dtype, copy=False)
