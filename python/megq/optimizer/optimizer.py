"""Optimizer base class: parameter groups, ``clear_grad``, ``step``."""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Union

import numpy as np

from ..tensor import Tensor

__all__ = ["Optimizer"]

ParamsArg = Union[Iterable[Tensor], Iterable[Dict[str, Any]]]


class Optimizer:
    """Holds ``param_groups`` (list of dicts with "params" and hyper-parameters such as "lr").

    MegEngine usage: ``gm.backward(loss); opt.step(); opt.clear_grad()``. Parameters without ``.grad`` are skipped.
    """

    def __init__(self, params: ParamsArg, defaults: Dict[str, Any]) -> None:
        self.defaults = defaults
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: params is empty")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: List[Dict[str, Any]] = []
        for g in groups:
            group = dict(defaults)
            group.update(g)
            group["params"] = list(group["params"])
            for p in group["params"]:
                if not isinstance(p, Tensor):
                    raise TypeError(f"{type(self).__name__}: params must be Tensors, got {type(p).__name__}")
            self.param_groups.append(group)
        self._state: Dict[int, Dict[str, np.ndarray]] = {}

    def clear_grad(self) -> None:
        """Drop every parameter's ``.grad``."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    zero_grad = clear_grad

    def step(self) -> "Optimizer":
        """Update every parameter that has a gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad.numpy(), self._state.setdefault(id(p), {}), group)
        return self

    def _update(self, p: Tensor, grad: np.ndarray, state: Dict[str, np.ndarray], group: Dict[str, Any]) -> None:
        raise NotImplementedError

    def _check_positive(self, name: str, value: float) -> None:
        if value < 0:
            raise ValueError(f"{type(self).__name__}: {name} must be non-negative, got {value}")
