"""Independent numpy oracle for int8 conv2d (NHWC input, OIHW weights), written for the tests.

The contract stated directly: padding taps read the input zero point (so they add 0), the
exact integer accumulation over the taps in int64 (im2col with K ordered (ky, kx, ci), one
integer product per group), plus the bias, then the GEMM requantization of
:func:`oracles.gemm.oracle_requantize`.
"""
from __future__ import annotations

import numpy as np

from .gemm import oracle_requantize


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def oracle_conv_acc(x, w, bias=None, *, stride=1, padding=0, dilation=1, groups=1, x_zero_point=0):
    """int64 accumulators ``(N, OH, OW, C_out)`` of ``x`` (N, H, W, C_in) with ``w`` (C_out, C_in/groups, KH, KW)."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, h, wd, cin = x.shape
    cout, cg, kh, kw = w.shape
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xs = np.zeros((n, h + 2 * ph, wd + 2 * pw, cin), np.int64)
    xs[:, ph:ph + h, pw:pw + wd] = x.astype(np.int64) - x_zero_point
    og = cout // groups
    acc = np.zeros((n, oh, ow, cout), np.int64)
    for g in range(groups):
        taps = [xs[:, ky * dh: ky * dh + sh * (oh - 1) + 1: sh, kx * dw: kx * dw + sw * (ow - 1) + 1: sw,
                   g * cg:(g + 1) * cg] for ky in range(kh) for kx in range(kw)]
        cols = np.concatenate(taps, axis=-1).reshape(n * oh * ow, kh * kw * cg)
        wg = w[g * og:(g + 1) * og].astype(np.int64).transpose(2, 3, 1, 0).reshape(kh * kw * cg, og)
        acc[..., g * og:(g + 1) * og] = (cols @ wg).reshape(n, oh, ow, og)
    if bias is not None:
        acc += np.asarray(bias, np.int64)
    return acc


def oracle_conv(x, w, bias=None, multiplier=None, *, stride=1, padding=0, dilation=1, groups=1, x_zero_point=0,
                out_dtype="int8", out_zero_point=0, out_min=None, out_max=None):
    acc = oracle_conv_acc(x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                          x_zero_point=x_zero_point)
    return oracle_requantize(acc, multiplier, out_dtype=out_dtype, out_zero_point=out_zero_point,
                             out_min=out_min, out_max=out_max)
