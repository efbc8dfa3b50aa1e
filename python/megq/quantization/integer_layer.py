"""Integer parameters of a weighted layer (:class:`IntegerLayer`), shared by the Q modules
(``megq.module.quantized``) and the QFloat model's exact eval path (``megq.module.qat.integer_eval``).

Both paths call :class:`IntegerLayer` for the same numbers, which is half of why QFloat (eval) and Q
agree bit for bit (the other half: megq.reference and the C++ kernels implement one contract).

From a QAT module in eval mode (its BN folded with the running statistics):
* ``weight_q = clamp(round_half_away(W / s_w), qmin, qmax)`` per output channel or per tensor: the
  same float32 division the weight fake quant performs;
* at the first input (scale ``s_x``): ``bias_q = clamp(round_half_away(b / float32(s_x * s_w)))`` in
  int32 (MegEngine's qint32 bias fake quant) and ``M = float32(s_x) * float32(s_w) / float32(s_y)``;
* clamp bounds ``[qmin, qmax]`` of the output dtype narrowed by a fused activation (class attribute
  ``fused_activation``): ``"relu"`` raises the lower one to ``z_y``, ``"relu6"`` also lowers the upper one to
  ``z_y + round_half_away(6 / s_y)`` (:func:`megq.functional.quantized.activation_bounds`).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from ..qtensor import QuantizedTensor
from ..reference.gemm import requantize_multiplier
from ..reference.rounding import round_half_away_from_zero

__all__ = ["IntegerLayer", "act_qparams", "quantize_weight"]

# The largest float32 below 2**31: clamping there keeps the int32 conversion defined.
_INT32_LIMIT = np.float32(2147483520.0)


def act_qparams(qp: Any, owner: str) -> Tuple[np.float32, int, int, int, str]:
    """(scale, zero_point, qmin, qmax, storage dtype) of per-tensor activation qparams."""
    if qp is None or getattr(qp, "scale", None) is None:
        raise ValueError(f"{owner}: no activation scale yet; calibrate the QFloat model (run data through it "
                         f"with observers enabled) or train it before quantize()")
    scale = np.asarray(qp.scale, np.float32)
    if scale.size != 1:
        raise ValueError(f"{owner}: activations must be quantized per tensor, got {scale.size} scales")
    scale = np.float32(scale.reshape(()))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"{owner}: invalid activation scale {scale}")
    zp = 0 if getattr(qp, "zero_point", None) is None else int(np.asarray(qp.zero_point).reshape(()))
    meta = qp.dtype_meta
    if meta.np_dtype_str not in ("int8", "uint8"):
        raise ValueError(f"{owner}: activations of a Q model must be stored in int8 or uint8, got {meta.name}")
    return scale, zp, int(meta.qmin), int(meta.qmax), meta.np_dtype_str


def quantize_weight(w: np.ndarray, qp: Any, owner: str) -> Tuple[np.ndarray, np.ndarray]:
    """int8 weights and their float32 scales (shape () or (C_out,)) from float weights and qparams."""
    if qp is None or getattr(qp, "scale", None) is None:
        raise ValueError(f"{owner}: no weight scale; run the QFloat model once (observers) before quantize()")
    zp = getattr(qp, "zero_point", None)
    if zp is not None and np.any(np.asarray(zp) != 0):
        raise ValueError(f"{owner}: weights must be quantized symmetrically (zero point 0) for megq's kernels")
    scale = np.asarray(qp.scale, np.float32)
    meta = qp.dtype_meta
    if meta.name not in ("qint8", "qint8_narrow", "qint4"):
        raise ValueError(f"{owner}: weights must be qint8, qint8_narrow or qint4 for megq's kernels, got {meta.name}")
    s = scale.reshape((-1,) + (1,) * (w.ndim - 1)) if scale.size > 1 else scale.reshape(())
    with np.errstate(over="ignore"):
        v = np.asarray(w, np.float32) / s
    v = np.clip(v, np.float32(meta.qmin), np.float32(meta.qmax))
    return round_half_away_from_zero(v).astype(np.int8), scale.reshape(-1) if scale.size > 1 else scale.reshape(())


class IntegerLayer:
    """int8 weights, float bias and output qparams of a conv or linear layer (see the module docstring)."""

    def __init__(self, weight_q: np.ndarray, weight_scale: np.ndarray, bias: Optional[np.ndarray],
                 out_scale: np.float32, out_zero_point: int, out_qmin: int, out_qmax: int, out_dtype: str,
                 relu: bool, activation: Optional[str] = None) -> None:
        self.weight_q = weight_q
        self.weight_scale = weight_scale
        self.bias = bias
        self.out_scale = np.float32(out_scale)
        self.out_zero_point = int(out_zero_point)
        self.out_qmin, self.out_qmax = int(out_qmin), int(out_qmax)
        self.out_dtype = out_dtype
        if activation not in (None, "relu", "relu6"):
            raise ValueError(f"activation: expected None, 'relu' or 'relu6', got {activation!r}")
        self.activation = activation if activation is not None else ("relu" if relu else None)
        self.relu = self.activation is not None  # the lower bound is raised to the zero point (ReLU and ReLU6)

    @classmethod
    def from_qat(cls, qat: Any) -> "IntegerLayer":
        """From a QAT Conv/Linear (with or without BN) module, using its eval-mode folded weights; a fused ReLU or
        ReLU6 (``qat.fused_activation``) becomes clamp bounds."""
        owner = type(qat).__name__
        activation = getattr(qat, "fused_activation", None)
        if activation not in (None, "relu", "relu6"):
            raise ValueError(f"{owner}: fused activation {activation!r} has no int8 kernel (supported: None, 'relu', "
                             f"'relu6')")
        weight, bias = qat.folded_weight_and_bias()
        weight_q, weight_scale = quantize_weight(np.asarray(weight, np.float32), qat.get_weight_qparams(), owner)
        s_y, z_y, qmin, qmax, dtype = act_qparams(qat.get_activation_qparams(), owner)
        b = None if bias is None else np.asarray(bias, np.float32).copy()
        return cls(weight_q, weight_scale, b, s_y, z_y, qmin, qmax, dtype, activation == "relu", activation)

    def bias_q(self, input_scale: np.float32) -> Optional[np.ndarray]:
        """int32 bias on the accumulator's scale ``s_x * s_w`` (float32 product)."""
        if self.bias is None:
            return None
        acc_scale = np.float32(input_scale) * self.weight_scale
        with np.errstate(over="ignore", divide="ignore"):
            v = self.bias / acc_scale
        v = np.clip(v, -_INT32_LIMIT, _INT32_LIMIT)
        return round_half_away_from_zero(v).astype(np.int32)

    def for_input(self, x: QuantizedTensor) -> Tuple[Optional[np.ndarray], np.ndarray, int, int]:
        """(bias_q, multipliers, out_min, out_max) for an input with ``x``'s scale."""
        from ..functional.quantized import activation_bounds

        multiplier = requantize_multiplier(x.scale, self.weight_scale, self.out_scale)
        lo, hi = activation_bounds(self.out_scale, self.out_zero_point, self.out_qmin, self.out_qmax,
                                   getattr(self, "activation", "relu" if self.relu else None))
        return self.bias_q(x.scale), multiplier, lo, hi

    def output(self, data: np.ndarray, backend: str) -> QuantizedTensor:
        """``data`` (int8/uint8 in the output quantization) as a QuantizedTensor computed by ``backend``."""
        return QuantizedTensor(data, self.out_scale, self.out_zero_point, self.out_qmin, self.out_qmax, backend)
