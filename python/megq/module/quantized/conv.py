"""Quantized Conv2d (also the target of ConvRelu2d, ConvBn2d and ConvBnRelu2d: BN is folded, ReLU
is a clamp bound) running megq's int8 conv2d and depthwise kernels."""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import numpy as np

from ...functional.quantized import traced
from ...qtensor import QuantizedTensor
from ...quantization.integer_layer import IntegerLayer
from .module import QuantizedModule, expect_quantized

__all__ = ["Conv2d", "ConvBn2d", "ConvBnRelu2d", "ConvRelu2d"]


class Conv2d(QuantizedModule):
    """int8 NHWC convolution with int32 bias, requantization and optional fused ReLU.

    Weights are quantized once (``quantize()``). The input's scale and zero point fold into the packed bias, so the
    kernel is packed and prepared (:func:`megq.kernels.prepare_conv2d` / ``prepare_depthwise_conv2d``: arguments
    checked once) at the first call per input quantization and cached in ``_packed_cache``, a transient attribute
    (derived and CPU-specific: not serialized, rebuilt on demand).
    """

    _transient_attrs = ("_packed_cache",)

    def __init__(self, layer: IntegerLayer, stride: Tuple[int, int], padding: Tuple[int, int],
                 dilation: Tuple[int, int], groups: int) -> None:
        super().__init__()
        self.layer = layer
        self.stride, self.padding, self.dilation, self.groups = tuple(stride), tuple(padding), tuple(dilation), groups
        self._packed_cache: Dict[Any, Callable[[np.ndarray], np.ndarray]] = {}

    @classmethod
    def from_qat_module(cls, qat_module: Any) -> "Conv2d":
        conv = getattr(qat_module, "conv", qat_module)  # ConvBn variants keep the geometry on .conv
        return cls(IntegerLayer.from_qat(qat_module), conv.stride, conv.padding, conv.dilation, conv.groups)

    @property
    def depthwise(self) -> bool:
        """One input channel per group (MobileNet's 3x3 layers): runs megq's depthwise kernels."""
        return self.groups > 1 and self.layer.weight_q.shape[1] == 1

    def kernel_for(self, x: QuantizedTensor) -> Callable[[np.ndarray], np.ndarray]:
        """The prepared kernel for inputs quantized like ``x`` (packed and checked once per input quantization: the
        per-call checks of the one-shot wrappers cost more than a small layer's arithmetic)."""
        key = (float(x.scale), x.zero_point, x.dtype)
        cache = self.__dict__.setdefault("_packed_cache", {})  # absent on a module rebuilt by the loader
        kernel = cache.get(key)
        if kernel is None:
            from ... import kernels  # here, not at the top: loads the compiled extension

            bias_q, multiplier, lo, hi = self.layer.for_input(x)
            pack_args = dict(input_dtype=x.dtype, input_zero_point=x.zero_point,
                             narrow_range=bool(self.layer.weight_q.min() > -128))
            bound = dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                         out_dtype=self.layer.out_dtype, out_zero_point=self.layer.out_zero_point, out_min=lo,
                         out_max=hi)
            if self.depthwise:
                packed = kernels.pack_depthwise_weights(self.layer.weight_q, bias_q, multiplier,
                                                        in_channels=self.groups, **pack_args)
                kernel = kernels.prepare_depthwise_conv2d(packed, **bound)
                kernel.plan_args = ("depthwise", packed, bound)  # read by execution plans (quantized.plan)
            else:
                packed = kernels.pack_conv2d_weights(self.layer.weight_q, bias_q, multiplier, groups=self.groups,
                                                     **pack_args)
                kernel = kernels.prepare_conv2d(packed, **bound)
                kernel.plan_args = ("conv2d", packed, bound)
            cache[key] = kernel
        return kernel

    @traced("conv2d")
    def forward(self, x: QuantizedTensor) -> QuantizedTensor:
        x = expect_quantized(x, type(self).__name__)
        return self.layer.output(self.kernel_for(x)(x.data), "kernels")

    def _extra_repr(self) -> str:
        w = self.layer.weight_q.shape
        return (f"{w[1] * self.groups}, {w[0]}, kernel_size={w[2:]}, stride={self.stride}, padding={self.padding}, "
                f"groups={self.groups}, activation={self.layer.activation}")


class ConvRelu2d(Conv2d):
    """Quantized ``relu(conv(x))`` (the ReLU is the clamp's lower bound)."""

    fused_activation = "relu"


class ConvBn2d(Conv2d):
    """Quantized ``bn(conv(x))`` with BN folded into the weights and bias."""


class ConvBnRelu2d(Conv2d):
    """Quantized ``relu(bn(conv(x)))``."""

    fused_activation = "relu"


class ConvRelu62d(Conv2d):
    """Quantized ``relu6(conv(x))``: ReLU6 is the clamp ``[max(qmin, z), min(qmax, z + round(6 / s))]``."""

    fused_activation = "relu6"


class ConvBnRelu62d(Conv2d):
    """Quantized ``relu6(bn(conv(x)))`` (BN folded, ReLU6 a clamp bound)."""

    fused_activation = "relu6"
