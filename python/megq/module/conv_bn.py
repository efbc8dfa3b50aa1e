"""Fused float modules ConvBn2d and ConvBnRelu2d: children ``conv`` (Conv2d) and ``bn`` (BatchNorm2d)."""
from __future__ import annotations

from typing import Any

from .. import functional as F
from ..tensor import Tensor
from .batchnorm import BatchNorm2d
from .conv import Conv2d
from .module import Module

__all__ = ["ConvBn2d", "ConvBnRelu2d", "ConvBnRelu62d"]


class _ConvBnActivation2d(Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, eps: float = 1e-5, momentum: float = 0.9,
                 affine: bool = True, track_running_stats: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.bn = BatchNorm2d(out_channels, eps, momentum, affine, track_running_stats)

    @classmethod
    def from_modules(cls, conv: Conv2d, bn: BatchNorm2d) -> "_ConvBnActivation2d":
        """A fused module that reuses (shares) ``conv`` and ``bn`` rather than creating new parameters."""
        if type(conv) is not Conv2d or not isinstance(bn, BatchNorm2d):
            raise TypeError(f"{cls.__name__}.from_modules: need a Conv2d and a BatchNorm2d, got "
                            f"{type(conv).__name__} and {type(bn).__name__}")
        if bn.num_features != conv.out_channels:
            raise ValueError(f"{cls.__name__}.from_modules: bn.num_features={bn.num_features} does not match "
                             f"conv.out_channels={conv.out_channels}")
        m = cls.__new__(cls)
        Module.__init__(m)
        m.conv, m.bn = conv, bn
        m.training = conv.training
        return m

    def forward_conv_bn(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class ConvBn2d(_ConvBnActivation2d):
    """``bn(conv(x))``."""

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_conv_bn(x)


class ConvBnRelu2d(_ConvBnActivation2d):
    """``relu(bn(conv(x)))``."""

    fused_activation = "relu"

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.forward_conv_bn(x))


class ConvBnRelu62d(_ConvBnActivation2d):
    """``relu6(bn(conv(x)))`` (torchvision's MobileNetV2 block; in a Q model ReLU6 is a clamp bound)."""

    fused_activation = "relu6"

    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(self.forward_conv_bn(x))
