"""Linear and LinearRelu."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import functional as F
from ..tensor import Parameter, Tensor
from . import init
from ._args import positive_int
from .module import Module

__all__ = ["Linear", "LinearRelu", "LinearRelu6"]


class Linear(Module):
    """``x @ weight.T + bias`` with ``weight`` (out_features, in_features). Init as MegEngine: MSRA uniform
    (``a=sqrt(5)``) weight, uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) bias."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.in_features = positive_int(in_features, "in_features", owner)
        self.out_features = positive_int(out_features, "out_features", owner)
        self.weight = Parameter(np.zeros((out_features, in_features), np.float32))
        self.bias = Parameter(np.zeros(out_features, np.float32)) if bias else None
        init.msra_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_features)
            init.uniform_(self.bias, -bound, bound)

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__}: input must be a megq.Tensor, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__}: input last dim must be in_features={self.in_features}, "
                             f"got shape {x.shape}")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return F.linear(x, self.weight, self.bias)

    def _extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class LinearRelu(Linear):
    """``relu(linear(x))`` as one module."""

    fused_activation = "relu"

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(super().forward(x))


class LinearRelu6(Linear):
    """``relu6(linear(x))`` as one module."""

    fused_activation = "relu6"

    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(Linear.forward(self, x))
