"""Convolution contract in numpy (see csrc/megq/conv2d.h)."""
from __future__ import annotations

import numpy as np

from .gemm import exact_int_matmul, requantize


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, multiplier=None, *,
           stride=1, padding=0, dilation=1, groups: int = 1, input_zero_point: int = 0,
           out_dtype: str = "int8", out_zero_point: int = 0, out_min: int | None = None,
           out_max: int | None = None) -> np.ndarray:
    """Numpy form of :func:`megq.kernels.conv2d`: NHWC int8/uint8 ``x``, OIHW int8 ``weight``."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, h, w, cin = x.shape
    cout, cg, kh, kw = weight.shape
    xs = np.pad(x.astype(np.float64) - input_zero_point, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    acc = np.zeros((n, oh, ow, cout), np.int64)
    cout_g = cout // groups
    for g in range(groups):
        # im2col of this group: (pixels, kh*kw*cg) with K ordered (ky, kx, ci), then one exact product.
        taps = [xs[:, ky * dh: ky * dh + sh * (oh - 1) + 1: sh, kx * dw: kx * dw + sw * (ow - 1) + 1: sw,
                   g * cg:(g + 1) * cg] for ky in range(kh) for kx in range(kw)]
        cols = np.concatenate(taps, axis=-1).reshape(n * oh * ow, kh * kw * cg)
        wg = weight[g * cout_g:(g + 1) * cout_g].transpose(2, 3, 1, 0).reshape(kh * kw * cg, cout_g)
        acc[..., g * cout_g:(g + 1) * cout_g] = exact_int_matmul(cols, wg).reshape(n, oh, ow, cout_g)
    if bias is not None:
        acc += np.asarray(bias, np.int64)
    if acc.size and (acc.max() > np.iinfo(np.int32).max or acc.min() < np.iinfo(np.int32).min):
        raise OverflowError("accumulator exceeds int32; megq's packing refuses such weights")
    acc = acc.astype(np.int32)
    if out_dtype == "int32":
        return acc
    if multiplier is None:
        raise ValueError("multiplier: required for int8/uint8 output")
    return requantize(acc, multiplier, out_dtype, out_zero_point, out_min, out_max)
