"""Independent numpy oracles for the operator tests (quantize, elementwise, pooling,
concat, depthwise). Written for the tests, not taken from megq.reference.

Every float32 operation of the contract is computed in float64 and rounded once to
float32: for +, -, *, / of float32 operands that equals the float32 operation (53 >=
2 * 24 + 2 bits), so these oracles state the contract without relying on numpy's
float32 arithmetic. Rounding half away from zero is done in float64 (exact).
"""
from __future__ import annotations

import numpy as np

RANGES = {"int8": (-128, 127), "uint8": (0, 255)}
f32 = np.float32
f64 = np.float64


def rha(v):
    v = np.asarray(v, dtype=f64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def fdiv(a, b):
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return (np.asarray(a, dtype=f64) / np.asarray(b, dtype=f64)).astype(f32)


def fmul(a, b):
    with np.errstate(over="ignore", invalid="ignore"):
        return (np.asarray(a, dtype=f64) * np.asarray(b, dtype=f64)).astype(f32)


def fadd(a, b):
    return (np.asarray(a, dtype=f64) + np.asarray(b, dtype=f64)).astype(f32)


def finish(v, z, dtype, lo=None, hi=None):
    dlo, dhi = RANGES[dtype]
    lo = dlo if lo is None else lo
    hi = dhi if hi is None else hi
    return np.clip(rha(v) + z, lo, hi).astype(dtype)


def ints(q, z=0):
    return q.astype(np.int64) - z


# --- quantize family -------------------------------------------------------------------

def quantize(x_nchw, s, z, dtype):
    q = finish(fdiv(x_nchw, f32(s)), z, dtype)
    return q.transpose(0, 2, 3, 1) if q.ndim == 4 else q


def dequantize(q_nhwc, s, z):
    x = fmul(ints(q_nhwc, z), f32(s))
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def requantize(q, s_in, z_in, s_out, z_out, out_dtype):
    m = fdiv(f32(s_in), f32(s_out))
    return finish(fmul(ints(q, z_in), m), z_out, out_dtype)


# --- elementwise -----------------------------------------------------------------------

def add(a, b, sa, za, sb, zb, so, zo, out_dtype, relu=False):
    ma, mb = fdiv(f32(sa), f32(so)), fdiv(f32(sb), f32(so))
    v = fadd(fmul(ints(a, za), ma), fmul(ints(b, zb), mb))
    lo = max(RANGES[out_dtype][0], zo) if relu else None
    return finish(v, zo, out_dtype, lo=lo)


def mul(a, b, sa, za, sb, zb, so, zo, out_dtype):
    m = fdiv(fmul(f32(sa), f32(sb)), f32(so))
    v = fmul(fmul(ints(a, za), ints(b, zb)), m)
    return finish(v, zo, out_dtype)


# --- pooling ---------------------------------------------------------------------------

def _windows(H, k, s, p, d):
    eff = (k - 1) * d + 1
    OH = (H + 2 * p - eff) // s + 1
    return OH, [[o * s - p + i * d for i in range(k)] for o in range(OH)]


def pool2d(x, mode, kernel, stride, padding, dilation=(1, 1), zero_point=0):
    """x: NHWC int8/uint8. mode: 'max', 'avg_exclude', 'avg_include'."""
    N, H, W, C = x.shape
    OH, rows = _windows(H, kernel[0], stride[0], padding[0], dilation[0])
    OW, cols = _windows(W, kernel[1], stride[1], padding[1], dilation[1])
    out = np.zeros((N, OH, OW, C), dtype=x.dtype)
    xi = x.astype(np.int64)
    for oh in range(OH):
        for ow in range(OW):
            taps = [(i, j) for i in rows[oh] for j in cols[ow] if 0 <= i < H and 0 <= j < W]
            assert taps
            vals = np.stack([xi[:, i, j, :] for i, j in taps])
            if mode == "max":
                out[:, oh, ow, :] = vals.max(axis=0)
            else:
                total = vals.sum(axis=0)
                if mode == "avg_include":
                    npad = kernel[0] * kernel[1] - len(taps)
                    total = total + npad * zero_point
                    count = kernel[0] * kernel[1]
                else:
                    count = len(taps)
                out[:, oh, ow, :] = rha(fdiv(total.astype(f32), f32(count))).astype(np.int64)
    return out


def global_avg_pool(x):
    N, H, W, C = x.shape
    total = x.astype(np.int64).sum(axis=(1, 2))
    return rha(fdiv(total.astype(f32), f32(H * W))).astype(x.dtype).reshape(N, 1, 1, C)


# --- concat ----------------------------------------------------------------------------

def concat(inputs, qparams, out_scale, out_zero_point, out_dtype):
    parts = [requantize(x, s, z, out_scale, out_zero_point, out_dtype) for x, (s, z) in zip(inputs, qparams)]
    return np.concatenate(parts, axis=-1)


# --- depthwise -------------------------------------------------------------------------

def depthwise(x, w, bias, mult, *, z_x, stride, padding, dilation, multiplier, z_y, out_dtype,
              lo=None, hi=None):
    """x: NHWC; w: (C_out, KH, KW) int8; output channel o reads input channel o // multiplier."""
    N, H, W, C = x.shape
    Co, KH, KW = w.shape
    OH, rows = _windows(H, KH, stride[0], padding[0], dilation[0])
    OW, cols = _windows(W, KW, stride[1], padding[1], dilation[1])
    xe = np.repeat(x.astype(np.int64) - z_x, multiplier, axis=3)
    ph, pw = padding
    xp = np.zeros((N, H + 2 * ph + KH * dilation[0], W + 2 * pw + KW * dilation[1], Co), dtype=np.int64)
    xp[:, ph:ph + H, pw:pw + W, :] = xe
    acc = np.zeros((N, OH, OW, Co), dtype=np.int64)
    for i in range(KH):
        for j in range(KW):
            r0, c0 = i * dilation[0], j * dilation[1]
            patch = xp[:, r0:r0 + (OH - 1) * stride[0] + 1:stride[0], c0:c0 + (OW - 1) * stride[1] + 1:stride[1], :]
            acc += patch * w[:, i, j].astype(np.int64)
    if bias is not None:
        acc += bias.astype(np.int64)
    assert acc.size == 0 or (acc.max() < 2**31 and acc.min() >= -2**31)
    v = fmul(acc.astype(f32), np.asarray(mult, dtype=f32))
    return finish(v, z_y, out_dtype, lo, hi)
