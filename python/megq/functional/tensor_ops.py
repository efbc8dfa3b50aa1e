"""Shape manipulation with backward: reshape, flatten, transpose, concat, indexing."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ..qtensor import QuantizedTensor
from ..tensor import Tensor, make_result
from . import quantized as QF
from ._utils import data

__all__ = ["reshape", "flatten", "transpose", "concat", "getitem", "expand_dims", "squeeze"]


def reshape(x: Any, shape: Sequence[int]) -> Tensor:
    """Reshape (``-1`` allowed once)."""
    if isinstance(x, QuantizedTensor):  # int8 path of Q models and exact QFloat eval
        return QF.reshape(x, shape)

    a = data(x)
    try:
        out = a.reshape(tuple(shape))
    except ValueError as e:
        raise ValueError(f"reshape: cannot reshape {a.shape} to shape {tuple(shape)}") from e
    return make_result(out, (x,), lambda g: (g.reshape(a.shape),))


def flatten(x: Any, start_axis: int = 0, end_axis: int = -1) -> Tensor:
    """Merge axes ``start_axis..end_axis`` into one (MegEngine's ``F.flatten``)."""
    if isinstance(x, QuantizedTensor):  # int8 path of Q models and exact QFloat eval
        return QF.flatten(x, start_axis, end_axis)

    a = data(x)
    s = start_axis % a.ndim
    e = end_axis % a.ndim
    if s > e:
        raise ValueError(f"flatten: start_axis {start_axis} is after end_axis {end_axis} for a {a.ndim}-D tensor")
    shape = a.shape[:s] + (int(np.prod(a.shape[s:e + 1])),) + a.shape[e + 1:]
    return reshape(x, shape)


def transpose(x: Any, axes: Optional[Sequence[int]] = None) -> Tensor:
    """Permute axes (reverse them by default)."""
    a = data(x)
    axes = tuple(range(a.ndim))[::-1] if axes is None else tuple(axes)
    inv = tuple(np.argsort(axes))
    return make_result(a.transpose(axes), (x,), lambda g: (g.transpose(inv),))


def concat(inps: Sequence[Any], axis: int = 0) -> Tensor:
    """Concatenate along ``axis``."""
    if not isinstance(inps, (list, tuple)) or not inps:
        raise TypeError("concat: inps must be a non-empty list or tuple of tensors")
    arrays = [data(t) for t in inps]
    out = np.concatenate(arrays, axis=axis)
    bounds = np.cumsum([a.shape[axis] for a in arrays])[:-1]
    return make_result(out, tuple(inps), lambda g: tuple(np.split(g, bounds, axis=axis)))


def getitem(x: Any, index: Any) -> Tensor:
    """``x[index]`` (basic and integer-array indexing)."""
    a = data(x)
    if isinstance(index, Tensor):
        index = index._data

    def backward(g: np.ndarray):
        gx = np.zeros_like(a)
        np.add.at(gx, index, g)
        return (gx,)

    return make_result(a[index], (x,), backward)


def expand_dims(x: Any, axis: int) -> Tensor:
    """Insert a length-1 axis."""
    a = data(x)
    return reshape(x, np.expand_dims(a, axis).shape)


def squeeze(x: Any, axis: Optional[int] = None) -> Tensor:
    """Remove length-1 axes."""
    a = data(x)
    return reshape(x, np.squeeze(a, axis).shape)
