"""Conv2d and ConvRelu2d."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import functional as F
from ..tensor import Parameter, Tensor
from . import init
from ._args import int_pair, positive_int
from .module import Module

__all__ = ["Conv2d", "ConvRelu2d", "ConvRelu62d"]


class Conv2d(Module):
    """2-D convolution, NCHW. ``weight``: (out_channels, in_channels // groups, kh, kw); ``bias``: (out_channels,)
    or None. Weight init: MSRA uniform with ``a=sqrt(5)`` (MegEngine's default), bias zeros."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.in_channels = positive_int(in_channels, "in_channels", owner)
        self.out_channels = positive_int(out_channels, "out_channels", owner)
        self.groups = positive_int(groups, "groups", owner)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{owner}: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                             f"divisible by groups ({groups})")
        self.kernel_size = int_pair(kernel_size, "kernel_size", owner, 1)
        self.stride = int_pair(stride, "stride", owner, 1)
        self.padding = int_pair(padding, "padding", owner, 0)
        self.dilation = int_pair(dilation, "dilation", owner, 1)
        self.weight = Parameter(np.zeros((out_channels, in_channels // groups) + self.kernel_size, np.float32))
        self.bias = Parameter(np.zeros(out_channels, np.float32)) if bias else None
        init.msra_uniform_(self.weight, a=math.sqrt(5))

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__}: input must be a megq.Tensor, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__}: input must be 4-D NCHW, got shape {x.shape}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: input has {x.shape[1]} channels, expected in_channels="
                             f"{self.in_channels}")

    def calc_conv(self, x: Tensor, weight: Any, bias: Any) -> Tensor:
        """The convolution with this module's geometry and the given weight/bias (QAT modules pass fake-quantized
        ones)."""
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return self.calc_conv(x, self.weight, self.bias)

    def _extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, bias={self.bias is not None}")


class ConvRelu2d(Conv2d):
    """``relu(conv(x))`` as one module (fused by the quantizer)."""

    fused_activation = "relu"

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(super().forward(x))


class ConvRelu62d(Conv2d):
    """``relu6(conv(x))`` as one module (MegEngine-style name: the activation before the ``2d`` suffix)."""

    fused_activation = "relu6"

    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(Conv2d.forward(self, x))
