"""Element-wise arithmetic and activations with backward."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..qtensor import QuantizedTensor
from ..tensor import Tensor, make_result
from . import quantized as QF
from ._utils import data, unbroadcast

__all__ = ["add", "sub", "mul", "div", "neg", "pow", "exp", "log", "relu", "relu6", "sigmoid", "hswish",
           "clip", "abs", "maximum", "minimum"]


def _shape(x: Any) -> tuple:
    return np.shape(data(x))


def add(x: Any, y: Any) -> Tensor:
    """``x + y`` with broadcasting."""
    sx, sy = _shape(x), _shape(y)
    return make_result(data(x) + data(y), (x, y), lambda g: (unbroadcast(g, sx), unbroadcast(g, sy)))


def sub(x: Any, y: Any) -> Tensor:
    """``x - y`` with broadcasting."""
    sx, sy = _shape(x), _shape(y)
    return make_result(data(x) - data(y), (x, y), lambda g: (unbroadcast(g, sx), unbroadcast(-g, sy)))


def mul(x: Any, y: Any) -> Tensor:
    """``x * y`` with broadcasting."""
    a, b = data(x), data(y)
    sx, sy = np.shape(a), np.shape(b)
    return make_result(a * b, (x, y), lambda g: (unbroadcast(g * b, sx), unbroadcast(g * a, sy)))


def div(x: Any, y: Any) -> Tensor:
    """``x / y`` with broadcasting."""
    a, b = data(x), data(y)
    sx, sy = np.shape(a), np.shape(b)
    out = a / b
    return make_result(out, (x, y), lambda g: (unbroadcast(g / b, sx), unbroadcast(-g * out / b, sy)))


def neg(x: Any) -> Tensor:
    """``-x``."""
    return make_result(-data(x), (x,), lambda g: (-g,))


def pow(x: Any, exponent: float) -> Tensor:
    """``x ** exponent`` for a constant exponent."""
    a = data(x)
    return make_result(a ** exponent, (x,), lambda g: (g * exponent * a ** (exponent - 1),))


def exp(x: Any) -> Tensor:
    """``e ** x``."""
    out = np.exp(data(x))
    return make_result(out, (x,), lambda g: (g * out,))


def log(x: Any) -> Tensor:
    """Natural logarithm."""
    a = data(x)
    return make_result(np.log(a), (x,), lambda g: (g / a,))


def abs(x: Any) -> Tensor:
    """``|x|`` (gradient ``sign(x)``)."""
    a = data(x)
    return make_result(np.abs(a), (x,), lambda g: (g * np.sign(a),))


def maximum(x: Any, y: Any) -> Tensor:
    """Element-wise maximum; ties send the gradient to ``x``."""
    a, b = data(x), data(y)
    m = a >= b
    return make_result(np.maximum(a, b), (x, y),
                       lambda g: (unbroadcast(g * m, np.shape(a)), unbroadcast(g * ~m, np.shape(b))))


def minimum(x: Any, y: Any) -> Tensor:
    """Element-wise minimum; ties send the gradient to ``x``."""
    a, b = data(x), data(y)
    m = a <= b
    return make_result(np.minimum(a, b), (x, y),
                       lambda g: (unbroadcast(g * m, np.shape(a)), unbroadcast(g * ~m, np.shape(b))))


def clip(x: Any, lower: float, upper: float) -> Tensor:
    """Clamp to ``[lower, upper]``; the gradient passes where ``lower <= x <= upper``."""
    a = data(x)
    return make_result(np.clip(a, lower, upper), (x,), lambda g: (g * ((a >= lower) & (a <= upper)),))


def relu(x: Any) -> Tensor:
    """``max(x, 0)``."""
    if isinstance(x, QuantizedTensor):  # int8 path of Q models and exact QFloat eval
        return QF.relu(x)

    out = np.maximum(data(x), 0)
    return make_result(out, (x,), lambda g: (g * (out > 0),))


def relu6(x: Any) -> Tensor:
    """``min(max(x, 0), 6)``."""
    if isinstance(x, QuantizedTensor):  # int8 path of Q models and exact QFloat eval
        return QF.relu6(x)
    a = data(x)
    return make_result(np.clip(a, 0, 6), (x,), lambda g: (g * ((a > 0) & (a < 6)),))


def sigmoid(x: Any) -> Tensor:
    """``1 / (1 + exp(-x))``, computed without overflow."""
    a = data(x)
    e = np.exp(-np.abs(a))
    out = np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
    return make_result(out, (x,), lambda g: (g * out * (1 - out),))


def hswish(x: Any) -> Tensor:
    """Hard swish ``x * relu6(x + 3) / 6``."""
    a = data(x)
    out = a * np.clip(a + 3, 0, 6) / 6
    # d/dx: 0 below -3, 1 above 3, (2x + 3) / 6 in between
    return make_result(out, (x,), lambda g: (g * np.where(a < -3, 0, np.where(a > 3, 1, (2 * a + 3) / 6)),))
