"""Depthwise conv2d contract (csrc/megq/depthwise.h), in numpy.

``acc[n, oh, ow, o] = sum_{i,j} (x[n, ih, iw, o // m] - z_x) * w[o, i, j] + b[o]`` (exact; padding taps
contribute 0), ``ih = oh*stride_h - pad_h + i*dil_h``; then the GEMM requantization
``clamp(round_half_away(float32(acc) * M[o]) + z_y, lo, hi)`` (:func:`megq.reference.requantize`).
"""
from __future__ import annotations

import numpy as np

from .gemm import requantize


def depthwise_conv2d(x: np.ndarray, weight: np.ndarray, bias=None, multiplier=None, *, input_zero_point=0,
                     stride=(1, 1), padding=(0, 0), dilation=(1, 1), out_dtype="int8", out_zero_point=0,
                     out_min=None, out_max=None) -> np.ndarray:
    """``x``: (N, H, W, C_in) int8/uint8; ``weight``: (C_out, KH, KW) int8 with C_out = C_in * m."""
    N, H, W, C = x.shape
    Co, KH, KW = weight.shape
    m = Co // C
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH = (H + 2 * ph - ((KH - 1) * dh + 1)) // sh + 1
    OW = (W + 2 * pw - ((KW - 1) * dw + 1)) // sw + 1
    xs = np.zeros((N, H + 2 * ph, W + 2 * pw, Co), dtype=np.int64)
    xs[:, ph:ph + H, pw:pw + W] = np.repeat(x.astype(np.int64) - int(input_zero_point), m, axis=3)
    acc = np.zeros((N, OH, OW, Co), dtype=np.int64)
    for i in range(KH):
        for j in range(KW):
            win = xs[:, i * dh:i * dh + (OH - 1) * sh + 1:sh, j * dw:j * dw + (OW - 1) * sw + 1:sw]
            acc += win * weight[:, i, j].astype(np.int64)
    if bias is not None:
        acc += np.asarray(bias, dtype=np.int64)
    if acc.size and (acc.max() > np.iinfo(np.int32).max or acc.min() < np.iinfo(np.int32).min):
        raise OverflowError("accumulator exceeds int32; megq's packing refuses such weights")
    return requantize(acc.astype(np.int32), multiplier, out_dtype, out_zero_point, out_min, out_max)
