"""Quantized Linear (also LinearRelu, LinearBn1d, LinearBnRelu1d) on megq's int8 GEMM."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from ...qtensor import QuantizedTensor
from .module import QuantizedModule, expect_quantized
from .params import IntegerLayer


class Linear(QuantizedModule):
    """``y = x W^T + b`` on (N, in_features) quantized input: int8 GEMM, int32 bias, requantization,
    optional fused ReLU. Packed at the first call per input quantization, like :class:`Conv2d`."""

    def __init__(self, layer: IntegerLayer) -> None:
        super().__init__()
        self.layer = layer
        self._packed_cache: Dict[Any, Any] = {}

    @classmethod
    def from_qat_module(cls, qat: Any) -> "Linear":
        return cls(IntegerLayer.from_qat(qat, "Relu" in type(qat).__name__))

    def _call_for(self, x: QuantizedTensor):
        """Packed weights and checked arguments per input quantization (see quantized Conv2d)."""
        key = (float(x.scale), x.zero_point, x.dtype)
        cache = self.__dict__.setdefault("_packed_cache", {})
        if key not in cache:
            from ... import _C, kernels

            bias_q, multiplier, lo, hi = self.layer.for_input(x)
            weight_kn = np.ascontiguousarray(self.layer.weight_q.T)  # GEMM's B is (in, out)
            packed = kernels.pack_gemm_weights(weight_kn, bias_q, multiplier, input_dtype=x.dtype,
                                               input_zero_point=x.zero_point,
                                               narrow_range=bool(self.layer.weight_q.min() > -128))
            out = (self.layer.out_dtype, self.layer.out_zero_point, lo, hi)
            kernels.gemm(x.data, packed, out_dtype=out[0], out_zero_point=out[1], out_min=lo, out_max=hi)
            cache[key] = (_C.gemm, (packed,) + out)
        return cache[key]

    def forward(self, x: QuantizedTensor) -> QuantizedTensor:
        x = expect_quantized(x, type(self).__name__)
        if x.ndim != 2:
            raise ValueError(f"{type(self).__name__}: expected a 2-D (N, features) input, got shape {x.shape}; "
                             f"flatten it first")
        fn, args = self._call_for(x)
        return self.layer.output(fn(x.data, *args), "kernels")

    def _extra_repr(self) -> str:
        out_f, in_f = self.layer.weight_q.shape
        return f"in_features={in_f}, out_features={out_f}, relu={self.layer.relu}"


class LinearRelu(Linear):
    """Quantized ``relu(linear(x))``."""


class LinearBn1d(Linear):
    """Quantized ``bn(linear(x))`` with BN folded."""


class LinearBnRelu1d(Linear):
    """Quantized ``relu(bn(linear(x)))``."""
