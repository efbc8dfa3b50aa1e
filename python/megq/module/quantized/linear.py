"""Quantized Linear (also LinearRelu, LinearBn1d, LinearBnRelu1d) on megq's int8 GEMM."""
from __future__ import annotations

from typing import Any, Callable, Dict

import numpy as np

from ...functional.quantized import traced
from ...qtensor import QuantizedTensor
from ...quantization.integer_layer import IntegerLayer
from .module import QuantizedModule, expect_quantized

__all__ = ["Linear", "LinearBn1d", "LinearBnRelu1d", "LinearRelu"]


class Linear(QuantizedModule):
    """``y = x W^T + b`` on (N, in_features) quantized input: int8 GEMM, int32 bias, requantization,
    optional fused ReLU. Packed and prepared (:func:`megq.kernels.prepare_gemm`) at the first call per input
    quantization and cached in the transient ``_packed_cache``, like :class:`~megq.module.quantized.Conv2d`."""

    _transient_attrs = ("_packed_cache",)

    def __init__(self, layer: IntegerLayer) -> None:
        super().__init__()
        self.layer = layer
        self._packed_cache: Dict[Any, Callable[[np.ndarray], np.ndarray]] = {}

    @classmethod
    def from_qat_module(cls, qat_module: Any) -> "Linear":
        return cls(IntegerLayer.from_qat(qat_module))

    def kernel_for(self, x: QuantizedTensor) -> Callable[[np.ndarray], np.ndarray]:
        """The prepared GEMM for inputs quantized like ``x`` (see quantized Conv2d)."""
        key = (float(x.scale), x.zero_point, x.dtype)
        cache = self.__dict__.setdefault("_packed_cache", {})  # absent on a module rebuilt by the loader
        kernel = cache.get(key)
        if kernel is None:
            from ... import kernels  # here, not at the top: loads the compiled extension

            bias_q, multiplier, lo, hi = self.layer.for_input(x)
            weight_kn = np.ascontiguousarray(self.layer.weight_q.T)  # GEMM's B is (in, out)
            packed = kernels.pack_gemm_weights(weight_kn, bias_q, multiplier, input_dtype=x.dtype,
                                               input_zero_point=x.zero_point,
                                               narrow_range=bool(self.layer.weight_q.min() > -128))
            bound = dict(out_dtype=self.layer.out_dtype, out_zero_point=self.layer.out_zero_point, out_min=lo,
                         out_max=hi)
            kernel = kernels.prepare_gemm(packed, **bound)
            kernel.plan_args = ("gemm", packed, bound)  # read by execution plans (quantized.plan)
            cache[key] = kernel
        return kernel

    @traced("linear")
    def forward(self, x: QuantizedTensor) -> QuantizedTensor:
        x = expect_quantized(x, type(self).__name__)
        if x.ndim != 2:
            raise ValueError(f"{type(self).__name__}: expected a 2-D (N, features) input, got shape {x.shape}; "
                             f"flatten it first")
        return self.layer.output(self.kernel_for(x)(x.data), "kernels")

    def _extra_repr(self) -> str:
        out_f, in_f = self.layer.weight_q.shape
        return f"in_features={in_f}, out_features={out_f}, activation={self.layer.activation}"


class LinearRelu(Linear):
    """Quantized ``relu(linear(x))``."""

    fused_activation = "relu"


class LinearRelu6(Linear):
    """Quantized ``relu6(linear(x))`` (ReLU6 a clamp bound)."""

    fused_activation = "relu6"


class LinearBn1d(Linear):
    """Quantized ``bn(linear(x))`` with BN folded."""


class LinearBnRelu1d(Linear):
    """Quantized ``relu(bn(linear(x)))``."""

    fused_activation = "relu"
