"""Quantized Elemwise (ADD, FUSE_ADD_RELU, MUL) and Concat of a Q model (ops in megq.functional.quantized)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ...functional.quantized import ELEMWISE_METHODS, concat, elemwise
from ...qtensor import QuantizedTensor
from ...quantization.integer_layer import act_qparams
from .module import QuantizedModule

__all__ = ["Concat", "Elemwise"]


class Elemwise(QuantizedModule):
    """Quantized ADD / FUSE_ADD_RELU / MUL: each input rescaled to the output scale in float32, rounded half
    away from zero, clamped. Other MegEngine modes have no int8 kernel in megq (quantize() refuses them)."""

    def __init__(self, method: str, out_scale: np.float32, out_zero_point: int, qmin: int, qmax: int,
                 out_dtype: str) -> None:
        super().__init__()
        if method not in ELEMWISE_METHODS:
            raise ValueError(f"method: Elemwise {method!r} has no int8 kernel; supported: {ELEMWISE_METHODS}. "
                             f"Call .disable_quantize() on that module to keep it float")
        self.method = method
        self.out_scale, self.out_zero_point, self.qmin, self.qmax, self.out_dtype = (
            np.float32(out_scale), out_zero_point, qmin, qmax, out_dtype)

    @classmethod
    def from_qat_module(cls, qat_module: Any) -> "Elemwise":
        s, z, qmin, qmax, dtype = act_qparams(qat_module.get_activation_qparams(), type(qat_module).__name__)
        return cls(qat_module.method, s, z, qmin, qmax, dtype)

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
    def from_qat_module(cls, qat_module: Any) -> "Concat":
        s, z, qmin, qmax, dtype = act_qparams(qat_module.get_activation_qparams(), type(qat_module).__name__)
        return cls(s, z, qmin, qmax, dtype)

    def forward(self, inps: Sequence[QuantizedTensor], axis: int = 0) -> QuantizedTensor:
        return concat(inps, axis, self.out_scale, self.out_zero_point, self.qmin, self.qmax, self.out_dtype,
                      type(self).__name__)
