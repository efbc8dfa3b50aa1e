"""linear and dropout."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..qtensor import QuantizedTensor
from ..random import get_rng
from ..tensor import Tensor, make_result
from ._utils import data

__all__ = ["linear", "dropout"]


def linear(inp: Any, weight: Any, bias: Any = None) -> Tensor:
    """``inp @ weight.T + bias`` with ``weight`` (out_features, in_features)."""
    x, w = data(inp), data(weight)
    if x.ndim < 1 or w.ndim != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: inp last dim must equal weight in_features, got inp {x.shape}, weight {w.shape}")
    b = None if bias is None else data(bias)
    out = x @ w.T
    if b is not None:
        out = out + b

    def backward(g: np.ndarray):
        g2 = g.reshape(-1, w.shape[0])
        x2 = x.reshape(-1, w.shape[1])
        gb = None if b is None else g2.sum(axis=0).reshape(b.shape)
        return (g @ w), g2.T @ x2, gb

    return make_result(out, (inp, weight, bias), backward)


def dropout(inp: Any, drop_prob: float, training: bool = True) -> Tensor:
    """Zero each element with probability ``drop_prob`` and scale the rest by ``1/(1-drop_prob)`` when training."""
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"dropout: drop_prob must be in [0, 1), got {drop_prob}")
    if isinstance(inp, QuantizedTensor):  # a Q model (or the exact QFloat eval) is inference: identity
        if training and drop_prob > 0.0:
            raise ValueError("dropout: a quantized tensor only supports inference (training=False)")
        return inp
    x = data(inp)
    if not training or drop_prob == 0.0:
        return make_result(x, (inp,), lambda g: (g,))
    mask = (get_rng().random(x.shape) >= drop_prob).astype(x.dtype) / (1.0 - drop_prob)
    return make_result(x * mask, (inp,), lambda g: (g * mask,))


# MegEngine's ``F.nn`` namespace also holds the network ops defined in the sibling modules (``F.nn.cross_entropy``,
# ``F.nn.conv2d`` ...): re-exported so scripts written against it run unchanged.
from .conv import conv2d  # noqa: E402
from .elemwise import hswish, relu, relu6, sigmoid  # noqa: E402
from .loss import cross_entropy, log_softmax, softmax, topk_accuracy  # noqa: E402
from .normalization import batch_norm  # noqa: E402
from .pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d  # noqa: E402

__all__ += ["adaptive_avg_pool2d", "avg_pool2d", "batch_norm", "conv2d", "cross_entropy", "hswish", "log_softmax",
            "max_pool2d", "relu", "relu6", "sigmoid", "softmax", "topk_accuracy"]
