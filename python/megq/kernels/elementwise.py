"""Quantized elementwise add, fuse_add_relu and mul (MegEngine ``ElemwiseMultiType``
QADD / QFUSE_ADD_RELU / QMUL, optimized-CPU form).

Contract (numpy form: :mod:`megq.reference.elementwise`)::

    add:            M_a = float32(s_a) / float32(s_o),  M_b = float32(s_b) / float32(s_o)
                    v = float32(a - z_a) * M_a + float32(b - z_b) * M_b     (2 multiplies, 1 add, no FMA)
    fuse_add_relu:  as add, lower clamp raised to z_o
    mul:            M = (float32(s_a) * float32(s_b)) / float32(s_o)
                    v = (float32(a - z_a) * float32(b - z_b)) * M
    y = clamp(round_half_away(v) + z_o, qmin, qmax)

``a`` and ``b`` are int8/uint8 arrays of the same shape (any layout: the op is
elementwise; non-contiguous views are copied first), each with its own per-tensor
scale and zero point; the output has its own qparams and dtype (default: ``a``'s).
Broadcasting: one operand may instead be a single value or a per-channel vector over
the other's last (channel, NHWC) axis, e.g. shape ``(C,)`` or ``(1, 1, 1, C)``; the
result has the full operand's shape, bit-identical to numpy broadcasting of the
same formula.
"""
from __future__ import annotations

import numpy as np

from .. import _C
from .quantize import qdtype_arg, quantized_array, scale_arg, zero_point_arg


def _broadcastable(big: tuple, small: tuple) -> bool:
    """``small`` is a single value or a per-channel vector over ``big``'s last axis."""
    if len(small) > len(big):
        return False
    if int(np.prod(small)) == 1:
        return True
    return len(small) >= 1 and all(d == 1 for d in small[:-1]) and len(big) >= 1 and small[-1] == big[-1]


def _binary(fn, a, b, a_scale, a_zero_point, b_scale, b_zero_point, out_scale, out_zero_point, out_dtype):
    a, an = quantized_array(a, "a")
    b, bn = quantized_array(b, "b")
    on = an if out_dtype is None else qdtype_arg(out_dtype, "out_dtype")
    if a.shape != b.shape and not (_broadcastable(a.shape, b.shape) or _broadcastable(b.shape, a.shape)):
        raise ValueError(f"b: shape {b.shape} does not match a's shape {a.shape} and is not a per-channel "
                         "(last axis) vector or a single value")
    return fn(a, b, scale_arg(a_scale, "a_scale"), zero_point_arg(a_zero_point, "a_zero_point", an),
              scale_arg(b_scale, "b_scale"), zero_point_arg(b_zero_point, "b_zero_point", bn),
              scale_arg(out_scale, "out_scale"), zero_point_arg(out_zero_point, "out_zero_point", on), on)


def add(a: np.ndarray, b: np.ndarray, *, a_scale, b_scale, out_scale, a_zero_point: int = 0,
        b_zero_point: int = 0, out_zero_point: int = 0, out_dtype=None) -> np.ndarray:
    """Quantized ``a + b`` with separate qparams per input and output (see module doc)."""
    return _binary(_C.add, a, b, a_scale, a_zero_point, b_scale, b_zero_point, out_scale, out_zero_point,
                   out_dtype)


def fuse_add_relu(a: np.ndarray, b: np.ndarray, *, a_scale, b_scale, out_scale, a_zero_point: int = 0,
                  b_zero_point: int = 0, out_zero_point: int = 0, out_dtype=None) -> np.ndarray:
    """Quantized ``relu(a + b)``: :func:`add` with the lower clamp raised to ``out_zero_point``."""
    return _binary(_C.fuse_add_relu, a, b, a_scale, a_zero_point, b_scale, b_zero_point, out_scale,
                   out_zero_point, out_dtype)


def mul(a: np.ndarray, b: np.ndarray, *, a_scale, b_scale, out_scale, a_zero_point: int = 0,
        b_zero_point: int = 0, out_zero_point: int = 0, out_dtype=None) -> np.ndarray:
    """Quantized ``a * b`` (see module doc)."""
    return _binary(_C.mul, a, b, a_scale, a_zero_point, b_scale, b_zero_point, out_scale, out_zero_point,
                   out_dtype)
