"""Quantize / dequantize / requantize (MegEngine ``TypeCvt`` semantics).

Contract (numpy form: :mod:`megq.reference.quantize`)::

    quantize:    q = clamp(round_half_away(x / s) + z, qmin, qmax)     float32 NCHW -> int8/uint8 NHWC
    dequantize:  x = float32(q - z) * s                                 int8/uint8 NHWC -> float32 NCHW
    requantize:  y = clamp(round_half_away(float32(q - z_in) * M) + z_out, qmin, qmax),
                 M = float32(s_in) / float32(s_out)                     any shape, layout kept

* ``x / s`` is a true float32 division, as MegEngine's fake quant and TypeCvt (not a
  multiplication by ``1/s``, which rounds differently for some inputs).
* Rounding is half away from zero (C ``roundf``); ``+-inf`` clamp to ``qmin``/``qmax``;
  **NaN input raises ValueError** (a NaN has no quantized value; the check is done by
  the kernel while it converts, at no extra pass).
* The NCHW <-> NHWC change is fused into the kernel. 2-D ``(N, C)`` arrays are
  accepted too (they are the same in both layouts).
* Inputs may be views with any strides; the last axis should be contiguous (else a
  contiguous copy is made first). Outputs are new C-contiguous arrays.
* Scales must be finite and > 0; zero points inside the dtype's range. Results are
  identical on every ISA path and at every thread count.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _C
from ._checks import dtype_name, int_arg

_QDTYPES = ("int8", "uint8")


_FLOAT32_MAX = 3.4028234663852886e38
_QDTYPE_BY_CHAR = {"b": "int8", "B": "uint8"}


def scale_arg(value, argument: str) -> float:
    """A scale as float32 (returned as a Python float), checked finite and > 0 after the
    float32 conversion (ValueError naming ``argument``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (float, int, np.floating, np.integer)):
        if isinstance(value, np.ndarray) and value.ndim == 0:
            return scale_arg(value[()], argument)
        if isinstance(value, np.ndarray):
            raise ValueError(f"{argument}: expected a scalar scale (per-tensor), got shape {value.shape}")
        raise TypeError(f"{argument}: expected a float scale, got {type(value).__name__}")
    v = float(value)
    if not (math.isfinite(v) and 0.0 < v < _FLOAT32_MAX):
        raise ValueError(f"{argument}: expected a finite scale > 0 (as float32), got {v!r}")
    s = float(np.float32(v))
    if not (s > 0.0 and math.isfinite(s)):
        raise ValueError(f"{argument}: expected a finite scale > 0 (as float32), got {v!r}")
    return s


def zero_point_arg(value, argument: str, dtype: str) -> int:
    z = value if type(value) is int else int_arg(value, argument)
    lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
    if not lo <= z <= hi:
        raise ValueError(f"{argument}: {z} is outside the {dtype} range [{lo}, {hi}]")
    return z


def qdtype_arg(value, argument: str) -> str:
    """"int8" or "uint8" from a string, numpy dtype or type (fast path for the strings)."""
    if type(value) is str and value in _QDTYPES:
        return value
    return dtype_name(value, argument, _QDTYPES)


def quantized_array(a, argument: str) -> tuple[np.ndarray, str]:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{argument}: expected a numpy array, got {type(a).__name__}")
    name = _QDTYPE_BY_CHAR.get(a.dtype.char)
    if name is None:
        raise TypeError(f"{argument}: expected dtype int8 or uint8, got {a.dtype}")
    return a, name


def quantize(x: np.ndarray, scale, zero_point: int = 0, dtype="int8") -> np.ndarray:
    """Quantize float32 NCHW ``x`` to an int8/uint8 NHWC array.

    Args:
        x: float32 array, (N, C, H, W) or (N, C).
        scale: per-tensor scale (finite, > 0; used as float32).
        zero_point: in the output dtype's range.
        dtype: "int8" (default) or "uint8".
    Returns:
        (N, H, W, C) (or (N, C)) int8/uint8.
    Raises:
        TypeError / ValueError naming the argument; ValueError if ``x`` contains NaN.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x: expected a numpy float32 array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"x: expected dtype float32, got {x.dtype}")
    if x.ndim not in (2, 4):
        raise ValueError(f"x: expected a 4-D NCHW (or 2-D (N, C)) array, got {x.ndim} dimension(s)")
    name = qdtype_arg(dtype, "dtype")
    s = scale_arg(scale, "scale")
    z = zero_point_arg(zero_point, "zero_point", name)
    if x.ndim == 2:
        return _C.quantize(x[:, :, None, None], s, z, name).reshape(x.shape)
    return _C.quantize(x, s, z, name)


def dequantize(q: np.ndarray, scale, zero_point: int = 0) -> np.ndarray:
    """Dequantize int8/uint8 NHWC ``q`` to a float32 NCHW array: ``float32(q - z) * s``.

    ``q``: (N, H, W, C) or (N, C). Returns (N, C, H, W) (or (N, C)) float32.
    """
    q, name = quantized_array(q, "q")
    if q.ndim not in (2, 4):
        raise ValueError(f"q: expected a 4-D NHWC (or 2-D (N, C)) array, got {q.ndim} dimension(s)")
    s = scale_arg(scale, "scale")
    z = zero_point_arg(zero_point, "zero_point", name)
    if q.ndim == 2:
        return _C.dequantize(q[:, None, None, :], s, z).reshape(q.shape)
    return _C.dequantize(q, s, z)


def requantize(q: np.ndarray, in_scale, in_zero_point: int, out_scale, out_zero_point: int = 0,
               out_dtype=None) -> np.ndarray:
    """Requantize ``q`` (int8/uint8, any shape and layout) from ``(in_scale, in_zero_point)``
    to ``(out_scale, out_zero_point)`` and ``out_dtype`` (default: ``q``'s dtype).

    ``y = clamp(round_half_away(float32(q - z_in) * M) + z_out)``, ``M = float32(s_in) / float32(s_out)``.
    Identical qparams give an exact copy.
    """
    q, name = quantized_array(q, "q")
    out_name = name if out_dtype is None else qdtype_arg(out_dtype, "out_dtype")
    si = scale_arg(in_scale, "in_scale")
    so = scale_arg(out_scale, "out_scale")
    zi = zero_point_arg(in_zero_point, "in_zero_point", name)
    zo = zero_point_arg(out_zero_point, "out_zero_point", out_name)
    return _C.requantize(q, si, zi, so, zo, out_name)
