"""Quantized Conv2d (also the target of ConvRelu2d, ConvBn2d and ConvBnRelu2d: BN is folded, ReLU
is a clamp bound) running megq's int8 conv2d kernel."""
from __future__ import annotations

from typing import Any, Dict, Tuple

from ...qtensor import QuantizedTensor
from .module import QuantizedModule, expect_quantized
from .params import IntegerLayer


class Conv2d(QuantizedModule):
    """int8 NHWC convolution with int32 bias, requantization and optional fused ReLU.

    Weights are quantized once (``quantize()``); they are packed for the kernels at the first call,
    once the input's scale and zero point are known (both fold into the packed bias), and the packed
    form is cached per input quantization.
    """

    def __init__(self, layer: IntegerLayer, stride: Tuple[int, int], padding: Tuple[int, int],
                 dilation: Tuple[int, int], groups: int) -> None:
        super().__init__()
        self.layer = layer
        self.stride, self.padding, self.dilation, self.groups = tuple(stride), tuple(padding), tuple(dilation), groups
        self._packed_cache: Dict[Any, Any] = {}

    @classmethod
    def from_qat_module(cls, qat: Any) -> "Conv2d":
        conv = getattr(qat, "conv", qat)  # ConvBn variants keep the geometry on .conv
        relu = "Relu" in type(qat).__name__
        return cls(IntegerLayer.from_qat(qat, relu), conv.stride, conv.padding, conv.dilation, conv.groups)

    @property
    def depthwise(self) -> bool:
        """One input channel per group (MobileNet's 3x3 layers): runs megq's depthwise kernels."""
        return self.groups > 1 and self.layer.weight_q.shape[1] == 1

    def _call_for(self, x: QuantizedTensor):
        """The kernel call for inputs quantized like ``x``: weights packed once per input quantization,
        arguments checked once by the documented wrappers, then the extension is called directly (the
        per-call checks of megq.kernels cost more than a small layer's arithmetic)."""
        key = (float(x.scale), x.zero_point, x.dtype)
        cache = self.__dict__.setdefault("_packed_cache", {})
        if key not in cache:
            from ... import _C, kernels

            bias_q, multiplier, lo, hi = self.layer.for_input(x)
            args = dict(input_dtype=x.dtype, input_zero_point=x.zero_point,
                        narrow_range=bool(self.layer.weight_q.min() > -128))
            out = dict(out_dtype=self.layer.out_dtype, out_zero_point=self.layer.out_zero_point, out_min=lo,
                       out_max=hi)
            geometry = (list(self.stride), list(self.padding), list(self.dilation))
            if self.depthwise:
                packed = kernels.pack_depthwise_weights(self.layer.weight_q, bias_q, multiplier,
                                                        in_channels=self.groups, **args)
                kernels.depthwise_conv2d(x.data, packed, *geometry, **out)  # validates once
                fn, geometry = _C.depthwise_conv2d, tuple(tuple(g) for g in geometry)
            else:
                packed = kernels.pack_conv2d_weights(self.layer.weight_q, bias_q, multiplier, groups=self.groups,
                                                     **args)
                kernels.conv2d(x.data, packed, stride=self.stride, padding=self.padding, dilation=self.dilation,
                               **out)  # validates once
                fn = _C.conv2d
            cache[key] = (fn, (packed,) + geometry + (out["out_dtype"], out["out_zero_point"], lo, hi))
        return cache[key]

    def forward(self, x: QuantizedTensor) -> QuantizedTensor:
        x = expect_quantized(x, type(self).__name__)
        fn, args = self._call_for(x)
        return self.layer.output(fn(x.data, *args), "kernels")

    def _extra_repr(self) -> str:
        w = self.layer.weight_q.shape
        return (f"{w[1] * self.groups}, {w[0]}, kernel_size={w[2:]}, stride={self.stride}, padding={self.padding}, "
                f"groups={self.groups}, relu={self.layer.relu}")


class ConvRelu2d(Conv2d):
    """Quantized ``relu(conv(x))`` (the ReLU is the clamp's lower bound)."""


class ConvBn2d(Conv2d):
    """Quantized ``bn(conv(x))`` with BN folded into the weights and bias."""


class ConvBnRelu2d(Conv2d):
    """Quantized ``relu(bn(conv(x)))``."""
