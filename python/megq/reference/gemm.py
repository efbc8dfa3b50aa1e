"""GEMM contract: ``C = requantize(A . B + bias)`` (see csrc/megq/gemm.h, requantize.h)."""
from __future__ import annotations

import numpy as np

from .rounding import round_half_away_from_zero

_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def exact_int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer product ``a @ b`` as int64, computed with float64 BLAS.

    Every product and partial sum is an integer of magnitude below 2**53 (|a| <= 255, |b| <= 128,
    K < 2**37), so float64 represents each exactly and the summation order cannot matter; this is
    orders of magnitude faster than numpy's int64 matmul, which has no BLAS.
    """
    return (np.asarray(a, np.float64) @ np.asarray(b, np.float64)).astype(np.int64)


def requantize_multiplier(input_scale, weight_scale, output_scale) -> np.ndarray:
    """``M = float32(s_x) * float32(s_w) / float32(s_y)``, each step in float32.

    ``weight_scale`` may be a scalar (per tensor) or an array (per output channel).
    Raises ValueError unless every scale is finite and > 0.
    """
    names = ("input_scale", "weight_scale", "output_scale")
    values = []
    for name, s in zip(names, (input_scale, weight_scale, output_scale)):
        arr = np.atleast_1d(np.asarray(s, dtype=np.float32))
        if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
            raise ValueError(f"{name}: expected finite scale(s) > 0, got {s!r}")
        values.append(arr)
    return (values[0] * values[1] / values[2]).astype(np.float32)


def requantize(acc: np.ndarray, multiplier, out_dtype: str = "int8", out_zero_point: int = 0,
               out_min: int | None = None, out_max: int | None = None) -> np.ndarray:
    """``clamp(round_half_away(float32(acc) * M) + z, lo, hi)`` (M per last axis or scalar)."""
    lo, hi = _RANGES[out_dtype]
    lo = lo if out_min is None else out_min
    hi = hi if out_max is None else out_max
    with np.errstate(over="ignore"):  # a huge multiplier gives +-inf, which the clamp bounds
        v = np.asarray(acc, dtype=np.int32).astype(np.float32) * np.asarray(multiplier, dtype=np.float32)
    v = np.clip(v, np.float32(lo - out_zero_point), np.float32(hi - out_zero_point))
    return (round_half_away_from_zero(v).astype(np.int32) + out_zero_point).astype(out_dtype)


def gemm(a: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, multiplier=None, *,
         input_zero_point: int = 0, out_dtype: str = "int8", out_zero_point: int = 0,
         out_min: int | None = None, out_max: int | None = None) -> np.ndarray:
    """Numpy form of :func:`megq.kernels.gemm`: exact int64 products, int32 result, requantized.

    ``a``: (M, K) int8/uint8, ``weight``: (K, N) int8, ``bias``: (N,) int32 or None,
    ``multiplier``: float32 scalar or (N,) (required unless ``out_dtype == "int32"``).
    """
    acc = exact_int_matmul(a.astype(np.int64) - input_zero_point, weight)
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)
    if acc.size and (acc.max() > np.iinfo(np.int32).max or acc.min() < np.iinfo(np.int32).min):
        raise OverflowError("accumulator exceeds int32; megq's packing refuses such weights")
    acc = acc.astype(np.int32)
    if out_dtype == "int32":
        return acc
    if multiplier is None:
        raise ValueError("multiplier: required for int8/uint8 output")
    return requantize(acc, multiplier, out_dtype, out_zero_point, out_min, out_max)
