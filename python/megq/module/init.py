"""In-place weight initializers (MegEngine's ``megengine.module.init`` names)."""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from ..random import get_rng
from ..tensor import Tensor

__all__ = ["calculate_fan_in_and_fan_out", "zeros_", "ones_", "fill_", "uniform_", "normal_", "msra_uniform_",
           "msra_normal_"]


def calculate_fan_in_and_fan_out(t: Tensor) -> Tuple[int, int]:
    """(fan_in, fan_out) of a weight (out, in, *kernel)."""
    shape = t.shape
    if len(shape) < 2:
        raise ValueError(f"fan in/out need a tensor with at least 2 dims, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _set(t: Tensor, values: np.ndarray) -> None:
    t.set_value(values.astype(t.dtype))


def fill_(t: Tensor, value: float) -> None:
    _set(t, np.full(t.shape, value))


def zeros_(t: Tensor) -> None:
    fill_(t, 0.0)


def ones_(t: Tensor) -> None:
    fill_(t, 1.0)


def uniform_(t: Tensor, low: float = 0.0, high: float = 1.0) -> None:
    _set(t, get_rng().uniform(low, high, t.shape))


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0) -> None:
    _set(t, get_rng().normal(mean, std, t.shape))


def _gain(a: float, nonlinearity: str) -> float:
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    return 1.0


def msra_uniform_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> None:
    """He/MSRA uniform init: U(-b, b) with ``b = gain * sqrt(3 / fan)``."""
    fan = calculate_fan_in_and_fan_out(t)[0 if mode == "fan_in" else 1]
    bound = _gain(a, nonlinearity) * math.sqrt(3.0 / fan)
    uniform_(t, -bound, bound)


def msra_normal_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> None:
    """He/MSRA normal init: N(0, (gain / sqrt(fan))^2)."""
    fan = calculate_fan_in_and_fan_out(t)[0 if mode == "fan_in" else 1]
    normal_(t, 0.0, _gain(a, nonlinearity) / math.sqrt(fan))
