"""NHWC pooling on int8/uint8 activations (MegEngine semantics; scale and zero point
unchanged from input to output).

Contract (numpy form: :mod:`megq.reference.pooling`)::

    window of output (oh, ow): input rows oh*stride - padding + i*dilation (i < kernel), same for columns
    OH = (H + 2*padding - ((kernel - 1)*dilation + 1)) // stride + 1
    max:      integer max over the window's input taps (padding never wins)
    average:  y = round_half_away(float32(sum) / float32(count)), sum = int32 sum of raw q
              "average_count_exclude_padding" (MegEngine default): count = input taps only
              "average": count = kernel_h * kernel_w, each padding tap adds the zero point
    global:   mean over all H x W positions

The float32 division is MegEngine's; for windows below 65536 taps it equals the exactly
rounded integer quotient. ``x`` is (N, H, W, C) int8/uint8, any strides (the channel axis
should be contiguous, else a copy is made). Every window must contain at least one input
tap, and the dilated kernel must fit the padded input.
"""
from __future__ import annotations

import numpy as np

from .. import _C
from ._checks import int_arg
from .quantize import quantized_array, zero_point_arg

_AVG_MODES = ("average_count_exclude_padding", "average")


def _pair(value, argument: str) -> tuple[int, int]:
    if type(value) is int and -(1 << 30) < value < (1 << 30):
        return value, value
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{argument}: expected an int or a pair of ints, got {value!r}")
        pair = int_arg(value[0], argument), int_arg(value[1], argument)
    else:
        v = int_arg(value, argument)
        pair = v, v
    for v in pair:
        if not -(1 << 30) < v < (1 << 30):
            raise ValueError(f"{argument}: {v} is out of range (|value| < 2^30)")
    return pair


def _input(x) -> tuple[np.ndarray, str]:
    x, name = quantized_array(x, "x")
    if x.ndim != 4:
        raise ValueError(f"x: expected a 4-D NHWC array, got {x.ndim} dimension(s)")
    return x, name


def max_pool2d(x: np.ndarray, kernel_size, stride=None, padding=0, dilation=1) -> np.ndarray:
    """Max pooling. ``kernel_size``, ``stride`` (default: ``kernel_size``), ``padding``,
    ``dilation``: an int or an (h, w) pair. Returns (N, OH, OW, C) of ``x``'s dtype."""
    x, _ = _input(x)
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    return _C.pool2d(x, k, s, _pair(padding, "padding"), _pair(dilation, "dilation"), "max", 0)


def avg_pool2d(x: np.ndarray, kernel_size, stride=None, padding=0,
               mode: str = "average_count_exclude_padding", zero_point: int = 0, dilation=1) -> np.ndarray:
    """Average pooling; ``mode`` is MegEngine's ``"average_count_exclude_padding"``
    (default) or ``"average"`` (count includes padding; padding taps read ``zero_point``,
    i.e. the quantized 0.0)."""
    x, name = _input(x)
    if mode not in _AVG_MODES:
        raise ValueError(f"mode: expected one of {_AVG_MODES}, got {mode!r}")
    z = zero_point_arg(zero_point, "zero_point", name)
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    return _C.pool2d(x, k, s, _pair(padding, "padding"), _pair(dilation, "dilation"), mode, z)


def global_avg_pool2d(x: np.ndarray) -> np.ndarray:
    """Mean over H and W: (N, H, W, C) -> (N, 1, 1, C), ``round_half_away(float32(sum) / (H*W))``."""
    x, _ = _input(x)
    return _C.global_avg_pool2d(x)
