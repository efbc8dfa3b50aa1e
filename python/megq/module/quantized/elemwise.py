"""Quantized Elemwise (ADD, FUSE_ADD_RELU, MUL) and Concat of a Q model."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ...qtensor import QuantizedTensor
from .backend import library, requantize
from .module import QuantizedModule, expect_quantized
from .params import act_qparams

SUPPORTED_METHODS = ("ADD", "FUSE_ADD_RELU", "MUL")

# NCHW axis -> axis of the NHWC storage of a 4-D QuantizedTensor.
_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


def elemwise(method: str, a: QuantizedTensor, b: QuantizedTensor, out_scale: np.float32, out_zero_point: int,
             qmin: int, qmax: int, out_dtype: str, owner: str) -> QuantizedTensor:
    """``method`` of two quantized tensors, requantized to the output qparams (contract in docs/operators.md)."""
    a, b = expect_quantized(a, owner), expect_quantized(b, owner)
    if a.shape != b.shape:
        raise ValueError(f"{owner}: input shapes {a.shape} and {b.shape} differ (no broadcasting)")
    lib = library(a.backend)
    fn = {"ADD": lib.add, "FUSE_ADD_RELU": lib.fuse_add_relu, "MUL": lib.mul}[method]
    data = fn(a.data, b.data, a_scale=a.scale, a_zero_point=a.zero_point, b_scale=b.scale,
              b_zero_point=b.zero_point, out_scale=out_scale, out_zero_point=out_zero_point, out_dtype=out_dtype)
    full = (-128, 127) if out_dtype == "int8" else (0, 255)
    if (qmin, qmax) != full:  # narrower dtypes (qint4, ...) live in 8-bit storage
        np.clip(data, qmin, qmax, out=data)
    return QuantizedTensor(data, out_scale, out_zero_point, qmin, qmax, a.backend)


def concat(inputs: Sequence[QuantizedTensor], axis: int, out_scale: np.float32, out_zero_point: int, qmin: int,
           qmax: int, out_dtype: str, owner: str) -> QuantizedTensor:
    """Concatenate along a logical (NCHW) axis, each input requantized to the output qparams."""
    inputs = [expect_quantized(x, owner) for x in inputs]
    if not inputs:
        raise ValueError(f"{owner}: needs at least one input")
    ndim = inputs[0].ndim
    if any(x.ndim != ndim for x in inputs):
        raise ValueError(f"{owner}: inputs have different ranks")
    axis = axis + ndim if axis < 0 else axis
    storage_axis = _NHWC_AXIS[axis] if ndim == 4 else axis
    parts = []
    for x in inputs:
        if x.scale == out_scale and x.zero_point == out_zero_point and x.dtype == out_dtype:
            parts.append(x.data)
        else:
            parts.append(requantize(x.backend, x.data, x.scale, x.zero_point, out_scale, out_zero_point, out_dtype))
    data = np.concatenate(parts, axis=storage_axis)
    np.clip(data, qmin, qmax, out=data)
    return QuantizedTensor(data, out_scale, out_zero_point, qmin, qmax, inputs[0].backend)


class Elemwise(QuantizedModule):
    """Quantized ADD / FUSE_ADD_RELU / MUL: each input rescaled to the output scale in float32, rounded half
    away from zero, clamped. Other MegEngine modes have no int8 kernel in megq (quantize() refuses them)."""

    def __init__(self, method: str, out_scale: np.float32, out_zero_point: int, qmin: int, qmax: int,
                 out_dtype: str) -> None:
        super().__init__()
        if method not in SUPPORTED_METHODS:
            raise ValueError(f"method: Elemwise {method!r} has no int8 kernel; supported: {SUPPORTED_METHODS}. "
                             f"Call .disable_quantize() on that module to keep it float")
        self.method = method
        self.out_scale, self.out_zero_point, self.qmin, self.qmax, self.out_dtype = (
            np.float32(out_scale), out_zero_point, qmin, qmax, out_dtype)

    @classmethod
    def from_qat_module(cls, qat: Any) -> "Elemwise":
        s, z, qmin, qmax, dtype = act_qparams(qat.get_activation_qparams(), type(qat).__name__)
        return cls(qat.method, s, z, qmin, qmax, dtype)

    def forward(self, a: QuantizedTensor, b: QuantizedTensor) -> QuantizedTensor:
        return elemwise(self.method, a, b, self.out_scale, self.out_zero_point, self.qmin, self.qmax,
                        self.out_dtype, type(self).__name__)

    def _extra_repr(self) -> str:
        return repr(self.method)


class Concat(QuantizedModule):
    """Quantized concatenation: ``forward(inps, axis=0)`` as MegEngine (axis in NCHW terms)."""

    def __init__(self, out_scale: np.float32, out_zero_point: int, qmin: int, qmax: int, out_dtype: str) -> None:
        super().__init__()
        self.out_scale, self.out_zero_point, self.qmin, self.qmax, self.out_dtype = (
            np.float32(out_scale), out_zero_point, qmin, qmax, out_dtype)

    @classmethod
    def from_qat_module(cls, qat: Any) -> "Concat":
        s, z, qmin, qmax, dtype = act_qparams(qat.get_activation_qparams(), type(qat).__name__)
        return cls(s, z, qmin, qmax, dtype)

    def forward(self, inps: Sequence[QuantizedTensor], axis: int = 0) -> QuantizedTensor:
        return concat(inps, axis, self.out_scale, self.out_zero_point, self.qmin, self.qmax, self.out_dtype,
                      type(self).__name__)
