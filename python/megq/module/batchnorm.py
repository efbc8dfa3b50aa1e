"""BatchNorm1d / BatchNorm2d with running statistics (MegEngine momentum convention)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ..tensor import Parameter, Tensor
from ._args import positive_int
from .module import Module

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    _rank = (2, 4)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.9, affine: bool = True,
                 track_running_stats: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.num_features = positive_int(num_features, "num_features", owner)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{owner}: momentum must be in [0, 1], got {momentum}")
        if eps <= 0:
            raise ValueError(f"{owner}: eps must be positive, got {eps}")
        self.eps = float(eps)
        # running = momentum * running + (1 - momentum) * batch  (MegEngine; PyTorch's momentum is 1 - this)
        self.momentum = float(momentum)
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None
        if track_running_stats:
            self.running_mean = Tensor(np.zeros(num_features, np.float32))
            self.running_var = Tensor(np.ones(num_features, np.float32))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x: Tensor) -> Tensor:
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: input must be a megq.Tensor, got {type(x).__name__}")
        if x.ndim not in self._rank:
            raise ValueError(f"{name}: input must be {' or '.join(f'{r}-D' for r in self._rank)}, got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{name}: input has {x.shape[1]} channels, expected num_features={self.num_features}")
        use_batch = self.training or not self.track_running_stats
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=use_batch,
                            momentum=self.momentum, eps=self.eps, inplace=self.track_running_stats)

    def _extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) inputs."""

    _rank = (2,)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs, per channel."""

    _rank = (4,)
