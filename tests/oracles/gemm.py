"""Independent numpy oracle for the GEMM tests (not megq.reference: written for the tests).

It states the contract directly: exact integer products in int64, the bias, one float32
multiply, rounding half away from zero done in float64 (exact for float32 inputs), then
the zero point and the clamp.
"""
from __future__ import annotations

import numpy as np

RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def round_half_away_f64(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def oracle_acc(a, w, bias=None, *, a_zero_point=0):
    """Exact int64 accumulators ``(a - z) @ w + bias``; asserts they fit int32 (megq's packing proves it)."""
    acc = (a.astype(np.int64) - a_zero_point) @ w.astype(np.int64)
    if bias is not None:
        acc += np.asarray(bias).astype(np.int64)
    assert acc.size == 0 or (acc.max() < 2**31 and acc.min() >= -(2**31))
    return acc


def oracle_requantize(acc, multiplier=None, *, out_dtype="int8", out_zero_point=0, out_min=None, out_max=None):
    """int32 output, or ``clamp(round_half_away(float32(acc) * float32(M)) + z, lo, hi)``."""
    if out_dtype == "int32":
        return np.asarray(acc).astype(np.int32)
    lo, hi = RANGES[out_dtype]
    lo = lo if out_min is None else out_min
    hi = hi if out_max is None else out_max
    with np.errstate(over="ignore"):  # huge multipliers give +-inf, which the clamp handles
        scaled = np.asarray(acc).astype(np.float32) * np.asarray(multiplier, dtype=np.float32)  # float32 product
    y = round_half_away_f64(scaled) + out_zero_point
    return np.clip(y, lo, hi).astype(out_dtype)


def oracle_gemm(a, w, bias=None, multiplier=None, *, a_zero_point=0, out_dtype="int8",
                out_zero_point=0, out_min=None, out_max=None):
    acc = oracle_acc(a, w, bias, a_zero_point=a_zero_point)
    return oracle_requantize(acc, multiplier, out_dtype=out_dtype, out_zero_point=out_zero_point,
                             out_min=out_min, out_max=out_max)
