"""Reductions and matrix multiplication with backward."""
from __future__ import annotations

import builtins
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from ..tensor import Tensor, make_result
from ._utils import data

__all__ = ["sum", "mean", "matmul", "max", "topk"]

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


def topk(inp: Any, k: int, descending: bool = False, kth_only: bool = False, no_sort: bool = False
         ) -> Tuple[Tensor, Tensor]:
    """MegEngine's ``F.topk``: the ``k`` smallest elements of each row of a 1-D or 2-D ``inp`` (the ``k`` largest
    with ``descending=True``) and their indices (int32), sorted (``no_sort`` is accepted; the result is always
    sorted). ``kth_only=True`` returns only the k-th element of each row. Ties keep the lower index first. The
    values are differentiable (the gradient goes back to the selected positions)."""
    a = data(inp)
    if a.ndim not in (1, 2):
        raise ValueError(f"topk: inp must be 1-D or 2-D, got shape {a.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= a.shape[-1]:
        raise ValueError(f"topk: k must be an int in [1, {a.shape[-1]}], got {k!r}")
    rows = a.reshape(1, -1) if a.ndim == 1 else a
    order = np.argsort(-rows if descending else rows, axis=1, kind="stable")[:, :k]
    if kth_only:
        order = order[:, k - 1:k]
    values = np.take_along_axis(rows, order, axis=1)

    def backward(g: np.ndarray):
        full = np.zeros_like(rows)
        np.put_along_axis(full, order, np.asarray(g).reshape(values.shape), axis=1)
        return (full.reshape(a.shape),)

    if kth_only:
        shape = () if a.ndim == 1 else (rows.shape[0],)
    else:
        shape = values.shape[1:] if a.ndim == 1 else values.shape
    out = make_result(values.reshape(shape), (inp,), backward)
    return out, Tensor(order.reshape(shape).astype(np.int32))
