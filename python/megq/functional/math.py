"""Reductions and matrix multiplication with backward."""
from __future__ import annotations

import builtins
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..tensor import Tensor, make_result
from ._utils import data

__all__ = ["sum", "mean", "matmul", "max"]

Axis = Optional[Union[int, Sequence[int]]]


def _expand(g: np.ndarray, shape: tuple, axis: Axis, keepdims: bool) -> np.ndarray:
    if not keepdims and axis is not None:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        g = np.expand_dims(g, tuple(a % len(shape) for a in axes))
    return np.broadcast_to(g, shape)


def sum(x: Any, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Sum over ``axis`` (all axes by default)."""
    a = data(x)
    ax = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    return make_result(np.asarray(a.sum(axis=ax, keepdims=keepdims)), (x,),
                       lambda g: (_expand(g, a.shape, ax, keepdims),))


def mean(x: Any, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes by default)."""
    a = data(x)
    ax = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    out = np.asarray(a.mean(axis=ax, keepdims=keepdims))
    count = a.size // builtins.max(out.size, 1)
    return make_result(out, (x,), lambda g: (_expand(g / count, a.shape, ax, keepdims),))


def max(x: Any, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Maximum over ``axis``; the gradient goes to every maximal element."""
    a = data(x)
    ax = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    out = np.asarray(a.max(axis=ax, keepdims=keepdims))

    def backward(g: np.ndarray):
        full = _expand(out, a.shape, ax, keepdims)
        return (_expand(g, a.shape, ax, keepdims) * (a == full),)

    return make_result(out, (x,), backward)


def matmul(x: Any, y: Any) -> Tensor:
    """Matrix product of 2-D operands (batched ``@`` semantics for higher ranks)."""
    a, b = data(x), data(y)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul: operands must be at least 2-D, got shapes {a.shape} and {b.shape}")

    def backward(g: np.ndarray):
        ga = g @ np.swapaxes(b, -1, -2)
        gb = np.swapaxes(a, -1, -2) @ g
        from ._utils import unbroadcast

        return unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)

    return make_result(a @ b, (x, y), backward)
