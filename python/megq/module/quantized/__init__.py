"""megq.module.quantized: the Q model's modules, running megq's C++ int8 kernels only.

Names match ``megq.module`` and ``megq.module.qat`` (``quantize`` maps ``qat.X`` to ``quantized.X``).
Layers exchange :class:`~megq.qtensor.QuantizedTensor` (int8/uint8 NHWC + scale + zero point); their
weightless ops are :mod:`megq.functional.quantized`'s and their integer parameters
:class:`megq.quantization.IntegerLayer`.
"""
from . import plan as plan  # PlanRunner: the execution plans quantize() attaches
from .conv import Conv2d, ConvBn2d, ConvBnRelu2d, ConvBnRelu62d, ConvRelu2d, ConvRelu62d
from .elemwise import Concat, Elemwise
from .linear import Linear, LinearBn1d, LinearBnRelu1d, LinearRelu, LinearRelu6
from .module import QuantizedModule
from .quant_dequant import DequantStub, QuantStub

__all__ = [
    "Concat", "Conv2d", "ConvBn2d", "ConvBnRelu2d", "ConvBnRelu62d", "ConvRelu2d", "ConvRelu62d", "DequantStub",
    "Elemwise", "Linear", "LinearBn1d", "LinearBnRelu1d", "LinearRelu", "LinearRelu6", "QuantStub",
    "QuantizedModule",
]
