"""int8 GEMM: ``C = requantize(A . B + bias)``.

Contract (numpy form: :func:`megq.reference.gemm`)::

    acc[m, n] = sum_k (A[m, k] - z_a) * B[k, n] + bias[n]          exact, int32
    C[m, n]   = clamp(round_half_away(float32(acc) * M[n]) + z_c, lo, hi)

* ``A``: (M, K) int8 or uint8 activations with zero point ``z_a``; rows may have any
  stride (views into larger buffers work); each row must be contiguous.
* ``B``: (K, N) int8 weights, symmetric; narrow range [-127, 127] by default.
  Packed once by :func:`pack_gemm_weights` together with the int32 bias, the
  zero-point compensation and the float32 multipliers ``M`` (per tensor or per
  output channel, see :func:`megq.kernels.requantize_multiplier`).
* ``C``: int8/uint8 requantized, or the raw int32 ``acc``. Fused ReLU / ReLU6
  are clamp bounds (:func:`relu_bounds`).

Overflow: packing checks that ``max|A - z_a| * sum_k |B[k, n]| + |bias[n]|`` fits
in int32 for every column, and raises ValueError otherwise; any weights are safe up
to ``K = MAX_SAFE_K`` (int8 inputs, zero point 0). Within that, every ISA path is
exact and all paths give identical bytes, at every thread count.
Weights are packed for the ISA active when packing and keep it.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _C
from ._checks import dtype_name, int_arg

PackedGemmWeights = _C.PackedGemmWeights

#: floor((2**31 - 1) / (128 * 127)): K up to which no int8 input (zero point 0)
#: and narrow-range weights can overflow the int32 accumulator (the extension's
#: ``megq::kMaxSafeK``, exported as ``_C.MAX_SAFE_K``).
MAX_SAFE_K: int = _C.MAX_SAFE_K

_DTYPE_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def relu_bounds(kind: str, out_dtype: str = "int8", out_zero_point: int = 0,
                out_scale: Optional[float] = None) -> tuple[int, int]:
    """Clamp bounds ``(out_min, out_max)`` that fuse an activation into requantization.

    ``"none"``: the dtype's range; ``"relu"``: lower bound ``z``; ``"relu6"``: also
    upper bound ``round_half_away(6 / scale) + z`` (needs ``out_scale``).
    """
    if out_dtype not in _DTYPE_RANGES:
        raise ValueError(f"out_dtype: expected 'int8' or 'uint8', got {out_dtype!r}")
    lo, hi = _DTYPE_RANGES[out_dtype]
    if kind == "none":
        return lo, hi
    if kind == "relu":
        return max(lo, out_zero_point), hi
    if kind == "relu6":
        if out_scale is None or not np.isfinite(out_scale) or out_scale <= 0:
            raise ValueError(f"out_scale: relu6 needs a finite scale > 0, got {out_scale!r}")
        from ..reference.rounding import round_half_away_from_zero

        six = int(round_half_away_from_zero(np.float32(6.0) / np.float32(out_scale)))
        return max(lo, out_zero_point), min(hi, six + out_zero_point)
    raise ValueError(f"kind: expected 'none', 'relu' or 'relu6', got {kind!r}")


def pack_gemm_weights(weight: np.ndarray, bias: Optional[np.ndarray] = None, multiplier=None, *,
                      input_dtype="int8", input_zero_point: int = 0, narrow_range: bool = True,
                      isa: Optional[str] = None) -> PackedGemmWeights:
    """Pack int8 weights ``(K, N)`` once for :func:`gemm`.

    Args:
        weight: (K, N) int8 array (rows must be contiguous; any row stride).
        bias: optional (N,) int32 bias on the accumulator's scale (``s_x * s_w``).
        multiplier: float32 scalar or (N,) per-channel requantization multipliers
            (:func:`requantize_multiplier`); required for int8/uint8 output.
        input_dtype: dtype of the activations this layer will receive, "int8" or "uint8".
        input_zero_point: their zero point (folded into the packed bias).
        narrow_range: require weights in [-127, 127] (MegEngine's ``qint8_narrow``);
            ``False`` allows -128.
        isa: pack for this ISA instead of the active one.
    Raises:
        TypeError / ValueError naming the offending argument; ValueError if the
        accumulator could overflow int32 for these weights.
    """
    if not isinstance(weight, np.ndarray):
        raise TypeError(f"weight: expected a numpy int8 array, got {type(weight).__name__}")
    input_signed = dtype_name(input_dtype, "input_dtype", ("int8", "uint8")) == "int8"
    zp = int_arg(input_zero_point, "input_zero_point")
    if bias is not None and not isinstance(bias, np.ndarray):
        raise TypeError(f"bias: expected a numpy int32 array or None, got {type(bias).__name__}")
    if multiplier is not None:
        mult = np.atleast_1d(np.asarray(multiplier))
        if mult.dtype.kind not in "fiu":
            raise TypeError(f"multiplier: expected float32 value(s), got dtype {mult.dtype}")
        multiplier = np.ascontiguousarray(mult, dtype=np.float32)
    return _C.pack_gemm_weights(weight, bias, multiplier, input_signed, zp, bool(narrow_range), isa)


def gemm(a: np.ndarray, packed: PackedGemmWeights, *, out_dtype="int8", out_zero_point: int = 0,
         out_min: Optional[int] = None, out_max: Optional[int] = None) -> np.ndarray:
    """``C = requantize(A . B + bias)`` with weights from :func:`pack_gemm_weights`.

    Args:
        a: (M, K) activations of the dtype the weights were packed for.
        packed: the packed weights.
        out_dtype: "int8", "uint8", or "int32" for the raw accumulator.
        out_zero_point: output zero point (int8/uint8 only).
        out_min, out_max: clamp bounds within the dtype (fused ReLU/ReLU6, see
            :func:`relu_bounds`); default: the dtype's range.
    Returns:
        a new (M, N) C-contiguous array.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"a: expected a numpy array, got {type(a).__name__}")
    if not isinstance(packed, PackedGemmWeights):
        raise TypeError(f"packed: expected PackedGemmWeights from pack_gemm_weights, got {type(packed).__name__}")
    out_name = dtype_name(out_dtype, "out_dtype", ("int8", "uint8", "int32"))
    zp = int_arg(out_zero_point, "out_zero_point")
    lo = None if out_min is None else int_arg(out_min, "out_min")
    hi = None if out_max is None else int_arg(out_max, "out_max")
    return _C.gemm(a, packed, out_name, zp, lo, hi)


