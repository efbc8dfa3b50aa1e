"""Pooling modules."""
from __future__ import annotations

from typing import Any, Optional

from .. import functional as F
from ..tensor import Tensor
from ._args import int_pair
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


class MaxPool2d(Module):
    """Max pooling; ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size: Any, stride: Optional[Any] = None, padding: Any = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel_size = int_pair(kernel_size, "kernel_size", type(self).__name__, 1)
        self.stride = self.kernel_size if stride is None else int_pair(stride, "stride", type(self).__name__, 1)
        self.padding = int_pair(padding, "padding", type(self).__name__, 0)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def _extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(MaxPool2d):
    """Average pooling; ``mode`` "average_count_exclude_padding" (default, as MegEngine) or "average"."""

    def __init__(self, kernel_size: Any, stride: Optional[Any] = None, padding: Any = 0,
                 mode: str = "average_count_exclude_padding", **kwargs: Any) -> None:
        super().__init__(kernel_size, stride, padding, **kwargs)
        if mode not in ("average_count_exclude_padding", "average"):
            raise ValueError(f"AvgPool2d: mode must be 'average_count_exclude_padding' or 'average', got {mode!r}")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.mode)


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size ``oshp``."""

    def __init__(self, oshp: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.oshp = int_pair(oshp, "oshp", type(self).__name__, 1)

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.oshp)
