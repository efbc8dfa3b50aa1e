"""Functional ops on :class:`~megq.qtensor.QuantizedTensor` (pooling, flatten, reshape, relu).

``megq.functional``'s ops hand a QuantizedTensor to these functions, so a model's forward (with
``F.flatten(F.adaptive_avg_pool2d(x, 1), 1)``, ``M.MaxPool2d`` ...) runs unchanged on a Q model
and on the QFloat model's exact eval path. Pooling keeps the scale and zero point (MegEngine
semantics); average pooling rounds ``sum / count`` half away from zero.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ...qtensor import QuantizedTensor
from . import backend as B


def _pair(v: Any) -> tuple:
    return (int(v), int(v)) if np.isscalar(v) else tuple(int(x) for x in v)


def _nhwc(x: QuantizedTensor, op: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D quantized tensor, got shape {x.shape}")


def max_pool2d(x: QuantizedTensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> QuantizedTensor:
    _nhwc(x, "max_pool2d")
    k = _pair(kernel_size)
    return x.like(B.pool2d(x.backend, x.data, k, k if stride is None else _pair(stride), _pair(padding), "max",
                           x.zero_point))


def avg_pool2d(x: QuantizedTensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               mode: str = "average_count_exclude_padding") -> QuantizedTensor:
    _nhwc(x, "avg_pool2d")
    k = _pair(kernel_size)
    return x.like(B.pool2d(x.backend, x.data, k, k if stride is None else _pair(stride), _pair(padding), mode,
                           x.zero_point))


def adaptive_avg_pool2d(x: QuantizedTensor, oshp: Any) -> QuantizedTensor:
    _nhwc(x, "adaptive_avg_pool2d")
    oh, ow = _pair(oshp)
    _, _, h, w = x.shape
    if (oh, ow) == (1, 1):
        return x.like(B.global_avg_pool2d(x.backend, x.data))
    if h % oh or w % ow:
        raise ValueError(f"adaptive_avg_pool2d: a quantized {h}x{w} input needs an output size that divides it, "
                         f"got {oh}x{ow}")
    return avg_pool2d(x, (h // oh, w // ow))


def flatten(x: QuantizedTensor, start_axis: int = 0, end_axis: int = -1) -> QuantizedTensor:
    """Flattens in the logical (NCHW) order, so a following Linear sees the float model's feature order."""
    data = np.ascontiguousarray(x.int_repr_nchw())
    shape = data.shape
    end = end_axis % len(shape)
    new_shape = shape[:start_axis] + (int(np.prod(shape[start_axis:end + 1])),) + shape[end + 1:]
    return x.like(_store(data.reshape(new_shape)))


def reshape(x: QuantizedTensor, shape: Sequence[int]) -> QuantizedTensor:
    """Reshapes the logical (NCHW-ordered) values."""
    data = np.ascontiguousarray(x.int_repr_nchw()).reshape(tuple(shape))
    return x.like(_store(data))


def relu(x: QuantizedTensor) -> QuantizedTensor:
    """``max(q, z)``: the quantized zero is the zero point."""
    return x.like(np.maximum(x.data, np.asarray(max(x.zero_point, x.qmin), x.data.dtype)))


def _store(logical: np.ndarray) -> np.ndarray:
    """Logical array -> storage layout (NHWC for 4-D)."""
    return np.ascontiguousarray(logical.transpose(0, 2, 3, 1)) if logical.ndim == 4 else logical
