"""Quantize / dequantize / requantize contract (csrc/megq/quantize.h), in numpy.

* quantize:   ``q = clamp(round_half_away(float32(x) / float32(s)) + z, qmin, qmax)``,
  a true float32 division; float32 NCHW in, NHWC out.
* dequantize: ``x = float32(q - z) * float32(s)``; NHWC in, float32 NCHW out.
* requantize: ``y = clamp(round_half_away(float32(q - z_in) * M) + z_out)`` with
  ``M = float32(s_in) / float32(s_out)``; any layout.
"""
from __future__ import annotations

import numpy as np

from .rounding import round_half_away_from_zero

RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def _clamp_round(v: np.ndarray, lo: int, hi: int, z: int, dtype: str) -> np.ndarray:
    v = np.clip(v, np.float32(lo - z), np.float32(hi - z))  # NaN-free input assumed
    return (round_half_away_from_zero(v).astype(np.int32) + z).astype(dtype)


def quantize(x: np.ndarray, scale, zero_point: int = 0, dtype: str = "int8") -> np.ndarray:
    """float32 NCHW ``x`` -> int8/uint8 NHWC (2-D ``(N, C)`` stays ``(N, C)``)."""
    x = np.asarray(x, dtype=np.float32)
    if np.isnan(x).any():
        raise ValueError("x: contains NaN")
    lo, hi = RANGES[dtype]
    with np.errstate(over="ignore", divide="ignore"):
        v = x / np.float32(scale)
    q = _clamp_round(v, lo, hi, int(zero_point), dtype)
    return q.transpose(0, 2, 3, 1).copy() if q.ndim == 4 else q


def dequantize(q: np.ndarray, scale, zero_point: int = 0) -> np.ndarray:
    """int8/uint8 NHWC ``q`` -> float32 NCHW (2-D stays 2-D)."""
    x = (q.astype(np.int32) - int(zero_point)).astype(np.float32) * np.float32(scale)
    return x.transpose(0, 3, 1, 2).copy() if x.ndim == 4 else x


def requantize_tensor(q: np.ndarray, in_scale, in_zero_point: int, out_scale, out_zero_point: int,
                      out_dtype: str = "int8") -> np.ndarray:
    """Numpy twin of :func:`megq.kernels.requantize` (same shape and layout)."""
    m = np.float32(in_scale) / np.float32(out_scale)
    v = (q.astype(np.int32) - int(in_zero_point)).astype(np.float32) * m
    lo, hi = RANGES[out_dtype]
    return _clamp_round(v, lo, hi, int(out_zero_point), out_dtype)
