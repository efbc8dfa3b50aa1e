"""Fused float modules LinearBn1d and LinearBnRelu1d: children ``linear`` (Linear) and ``bn`` (BatchNorm1d)."""
from __future__ import annotations

from typing import Any

from .. import functional as F
from ..tensor import Tensor
from .batchnorm import BatchNorm1d
from .linear import Linear
from .module import Module

__all__ = ["LinearBn1d", "LinearBnRelu1d"]


class _LinearBnActivation1d(Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, eps: float = 1e-5,
                 momentum: float = 0.9, affine: bool = True, track_running_stats: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.linear = Linear(in_features, out_features, bias)
        self.bn = BatchNorm1d(out_features, eps, momentum, affine, track_running_stats)

    @classmethod
    def from_modules(cls, linear: Linear, bn: BatchNorm1d) -> "_LinearBnActivation1d":
        """A fused module sharing ``linear`` and ``bn``."""
        if type(linear) is not Linear or not isinstance(bn, BatchNorm1d):
            raise TypeError(f"{cls.__name__}.from_modules: need a Linear and a BatchNorm1d, got "
                            f"{type(linear).__name__} and {type(bn).__name__}")
        if bn.num_features != linear.out_features:
            raise ValueError(f"{cls.__name__}.from_modules: bn.num_features={bn.num_features} does not match "
                             f"linear.out_features={linear.out_features}")
        m = cls.__new__(cls)
        Module.__init__(m)
        m.linear, m.bn = linear, bn
        m.training = linear.training
        return m


class LinearBn1d(_LinearBnActivation1d):
    """``bn(linear(x))``."""

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.linear(x))


class LinearBnRelu1d(_LinearBnActivation1d):
    """``relu(bn(linear(x)))``."""

    fused_activation = "relu"

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.linear(x)))
