"""Helpers shared by the functional ops."""
from __future__ import annotations

from typing import Any, Sequence, Tuple

import numpy as np

from ..tensor import Tensor


def data(x: Any) -> np.ndarray:
    """numpy data of a Tensor or array-like (Python scalars stay scalars so dtypes do not widen)."""
    if isinstance(x, Tensor):
        return x._data
    if isinstance(x, (int, float)):
        return x  # type: ignore[return-value]
    return np.asarray(x)


def unbroadcast(g: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` over the axes that broadcasting added or expanded to get back to ``shape``."""
    if g.shape == shape:
        return g
    nlead = g.ndim - len(shape)
    axes = tuple(range(nlead)) + tuple(i + nlead for i, n in enumerate(shape) if n == 1 and g.shape[i + nlead] != 1)
    out = g.sum(axis=axes, keepdims=True) if axes else g
    return out.reshape(shape)


def pair(v: Any, name: str) -> Tuple[int, int]:
    """``v`` as a pair of non-negative ints (accepts an int or a length-2 sequence)."""
    if isinstance(v, (int, np.integer)):
        v = (int(v), int(v))
    if not isinstance(v, Sequence) or len(v) != 2 or not all(isinstance(i, (int, np.integer)) for i in v):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    if any(i < 0 for i in v):
        raise ValueError(f"{name} must be non-negative, got {v!r}")
    return int(v[0]), int(v[1])


def check_rank(x: np.ndarray, rank: int, op: str, name: str = "inp") -> None:
    """Raise ValueError naming ``name`` unless ``x`` has ``rank`` dimensions."""
    if x.ndim != rank:
        raise ValueError(f"{op}: {name} must be {rank}-D (got shape {tuple(x.shape)})")


def nchw_rows(x: np.ndarray) -> np.ndarray:
    """(N*H*W, C) view of an NCHW array whose memory is NHWC (conv outputs); copies otherwise."""
    n, c, h, w = x.shape
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(n * h * w, c)


def rows_to_nchw(r: np.ndarray, shape: Tuple[int, int, int, int]) -> np.ndarray:
    """Inverse of :func:`nchw_rows`: NCHW-shaped view over NHWC memory."""
    n, c, h, w = shape
    return r.reshape(n, h, w, c).transpose(0, 3, 1, 2)
