"""Quantized add / fuse_add_relu / mul contract (csrc/megq/elementwise.h), in numpy.

add:  ``v = float32(a - z_a) * M_a + float32(b - z_b) * M_b``, ``M_x = float32(s_x) / float32(s_o)``
mul:  ``v = (float32(a - z_a) * float32(b - z_b)) * M``, ``M = (float32(s_a) * float32(s_b)) / float32(s_o)``
then  ``y = clamp(round_half_away(v) + z_o, qmin, qmax)`` (fuse_add_relu: ``qmin = max(qmin, z_o)``).
"""
from __future__ import annotations

import numpy as np

from .rounding import round_half_away_from_zero

_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}
_f = np.float32


def _deq(q, z):
    return (q.astype(np.int32) - int(z)).astype(np.float32)


def _finish(v, zo, out_dtype, relu=False):
    lo, hi = _RANGES[out_dtype]
    if relu:
        lo = max(lo, int(zo))
    v = np.clip(v, _f(lo - zo), _f(hi - zo))
    return (round_half_away_from_zero(v).astype(np.int32) + int(zo)).astype(out_dtype)


def add(a, b, a_scale, a_zero_point, b_scale, b_zero_point, out_scale, out_zero_point=0,
        out_dtype="int8", relu=False):
    ma = _f(a_scale) / _f(out_scale)
    mb = _f(b_scale) / _f(out_scale)
    v = _deq(a, a_zero_point) * ma + _deq(b, b_zero_point) * mb
    return _finish(v.astype(np.float32), out_zero_point, out_dtype, relu)


def fuse_add_relu(a, b, a_scale, a_zero_point, b_scale, b_zero_point, out_scale, out_zero_point=0,
                  out_dtype="int8"):
    return add(a, b, a_scale, a_zero_point, b_scale, b_zero_point, out_scale, out_zero_point, out_dtype, True)


def mul(a, b, a_scale, a_zero_point, b_scale, b_zero_point, out_scale, out_zero_point=0, out_dtype="int8"):
    m = (_f(a_scale) * _f(b_scale)) / _f(out_scale)
    v = (_deq(a, a_zero_point) * _deq(b, b_zero_point)) * m
    return _finish(v.astype(np.float32), out_zero_point, out_dtype)
