"""Optimizer base class: parameter groups, ``clear_grad``, ``step``."""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Union

import numpy as np

from ..tensor import Tensor

__all__ = ["Optimizer"]

ParamsArg = Union[Iterable[Tensor], Iterable[Dict[str, Any]]]


class Optimizer:
    """Holds ``param_groups`` (list of dicts with "params" and hyper-parameters such as "lr").

    ``params``: an iterable of Parameters, one Parameter, one param-group dict (``{"params": ..., "lr": ...}``)
    or a list of them; a group's missing hyper-parameters take the optimizer's arguments.

    MegEngine usage: ``gm.backward(loss); opt.step(); opt.clear_grad()``. Parameters without ``.grad`` are skipped.
    """

    def __init__(self, params: ParamsArg, defaults: Dict[str, Any]) -> None:
        self.defaults = defaults
        if isinstance(params, (Tensor, dict)):  # one Parameter, or one param-group dict (MegEngine accepts both)
            params = [params]
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: params is empty")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: List[Dict[str, Any]] = []
        for g in groups:
            group = dict(defaults)
            group.update(g)
            if not isinstance(g, dict) or "params" not in g:
                raise TypeError(f"{type(self).__name__}: a param group must be a dict with a 'params' entry, got "
                                f"{type(g).__name__}")
            group["params"] = [group["params"]] if isinstance(group["params"], Tensor) else list(group["params"])
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

    # -- checkpoints -------------------------------------------------------------------------------------------------
    def _params_in_order(self) -> List[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> Dict[str, Any]:
        """The optimizer's state as plain data, for ``megq.save`` (MegEngine/PyTorch layout).

        ``{"state": {index: {name: array}}, "param_groups": [{hyper-parameters..., "params": [index, ...]}]}``:
        parameters are numbered in ``param_groups`` order, so the dict does not refer to the parameter objects and
        can be loaded into a new optimizer over the same model. Arrays are copies.
        """
        index = {id(p): i for i, p in enumerate(self._params_in_order())}
        state = {index[pid]: {k: np.array(v, copy=True) for k, v in s.items()}
                 for pid, s in self._state.items() if pid in index}
        groups = []
        for group in self.param_groups:
            g = {k: v for k, v in group.items() if k != "params"}
            g["params"] = [index[id(p)] for p in group["params"]]
            groups.append(g)
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore hyper-parameters and per-parameter state (e.g. momentum buffers) from :meth:`state_dict`.

        The optimizer must have been built over the same parameters in the same groups; group sizes, state shapes
        and dtypes are checked (``ValueError`` naming what differs) before anything is changed.
        """
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise TypeError("load_state_dict: state_dict must be a dict with keys 'state' and 'param_groups'")
        groups, state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, (list, tuple)) or len(groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: expected {len(self.param_groups)} param groups, got "
                             f"{len(groups) if isinstance(groups, (list, tuple)) else type(groups).__name__}")
        params = self._params_in_order()
        start = 0
        for i, (mine, theirs) in enumerate(zip(self.param_groups, groups)):
            n = len(mine["params"])
            if not isinstance(theirs, dict) or list(theirs.get("params", ())) != list(range(start, start + n)):
                raise ValueError(f"load_state_dict: param group {i} does not hold parameters {start}..{start + n - 1}")
            start += n
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict: 'state' must be a dict, got {type(state).__name__}")
        new_state: Dict[int, Dict[str, np.ndarray]] = {}
        for key, s in state.items():
            if type(key) is not int or not 0 <= key < len(params) or not isinstance(s, dict):
                raise ValueError(f"load_state_dict: bad state entry for parameter {key!r}")
            p = params[key]
            entry = {}
            for name, v in s.items():
                arr = np.array(v, copy=True)
                if arr.shape not in ((), p.shape):
                    raise ValueError(f"load_state_dict: state {name!r} of parameter {key} has shape {arr.shape}, "
                                     f"the parameter {p.shape}")
                entry[name] = arr
            new_state[id(p)] = entry
        for mine, theirs in zip(self.param_groups, groups):
            for k, v in theirs.items():
                if k != "params":
                    mine[k] = tuple(v) if isinstance(v, list) and isinstance(mine.get(k), tuple) else v
        self._state = new_state

    def _check_positive(self, name: str, value: float) -> None:
        if value < 0:
            raise ValueError(f"{type(self).__name__}: {name} must be non-negative, got {value}")
