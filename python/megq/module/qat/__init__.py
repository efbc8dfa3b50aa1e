"""megq.module.qat: QAT (QFloat) modules. Names match ``megq.module`` (float) and ``megq.module.quantized``; the
name-based mappings of ``quantize_qat`` and ``quantize`` rely on that.

In eval mode these modules run the exact integer path of :mod:`megq.module.qat.integer_eval`, registered here.
"""
from .conv import Conv2d, ConvRelu2d, ConvRelu62d
from .conv_bn import ConvBn2d, ConvBnRelu2d, ConvBnRelu62d
from .elemwise import Concat, Elemwise
from .integer_eval import register_integer_forwards
from .linear import Linear, LinearRelu, LinearRelu6
from .linear_bn import LinearBn1d, LinearBnRelu1d
from .module import QATModule
from .quant_dequant import DequantStub, QuantStub

__all__ = [
    "Concat", "Conv2d", "ConvBn2d", "ConvBnRelu2d", "ConvBnRelu62d", "ConvRelu2d", "ConvRelu62d", "DequantStub",
    "Elemwise", "Linear", "LinearBn1d", "LinearBnRelu1d", "LinearRelu", "LinearRelu6", "QATModule", "QuantStub",
]

register_integer_forwards()
