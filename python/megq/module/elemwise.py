"""Elemwise (binary/unary arithmetic as a module, so the quantizer can observe its output) and Concat."""
from __future__ import annotations

from typing import Any, Callable, Dict, Sequence

from .. import functional as F
from ..tensor import Tensor
from .module import Module

__all__ = ["Elemwise", "Concat"]

# MegEngine Elemwise mode names (upper case) -> float implementation.
_METHODS: Dict[str, Callable[..., Tensor]] = {
    "ADD": F.add,
    "SUB": F.sub,
    "MUL": F.mul,
    "TRUE_DIV": F.div,
    "NEGATE": F.neg,
    "ABS": F.abs,
    "RELU": F.relu,
    "MAX": F.maximum,
    "MIN": F.minimum,
    "EXP": F.exp,
    "LOG": F.log,
    "SIGMOID": F.sigmoid,
    "H_SWISH": F.hswish,
    "FUSE_ADD_RELU": lambda x, y: F.relu(F.add(x, y)),
    "FUSE_ADD_SIGMOID": lambda x, y: F.sigmoid(F.add(x, y)),
    "FUSE_ADD_H_SWISH": lambda x, y: F.hswish(F.add(x, y)),
    "FUSE_MUL_ADD3": lambda x, y, z: F.add(F.mul(x, y), z),
}


class Elemwise(Module):
    """``Elemwise(method)``: ``method`` is a MegEngine mode name, case-insensitive ("add", "fuse_add_relu", "mul",
    "sub", "true_div", "max", "min", "relu", "h_swish", "fuse_mul_add3", ...). Stored upper-case in ``method``."""

    def __init__(self, method: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(method, str) or method.upper() not in _METHODS:
            raise ValueError(f"Elemwise: unknown method {method!r}; supported: {sorted(_METHODS)}")
        self.method = method.upper()

    def forward(self, *inps: Tensor) -> Tensor:
        return _METHODS[self.method](*inps)

    def _extra_repr(self) -> str:
        return repr(self.method)


class Concat(Module):
    """``forward(inps, axis=0)``: concatenation as a module (MegEngine signature)."""

    def forward(self, inps: Sequence[Tensor], axis: int = 0) -> Tensor:
        return F.concat(inps, axis)
