"""megq.module.qat: QAT (QFloat) modules. Names match ``megq.module`` (float) and ``megq.module.quantized``; the
name-based mapping of ``quantize_qat`` relies on that."""
from .conv import Conv2d, ConvRelu2d
from .conv_bn import ConvBn2d, ConvBnRelu2d
from .elemwise import Concat, Elemwise
from .linear import Linear, LinearRelu
from .linear_bn import LinearBn1d, LinearBnRelu1d
from .module import QATModule
from .quant_dequant import DequantStub, QuantStub

__all__ = [
    "Concat", "Conv2d", "ConvBn2d", "ConvBnRelu2d", "ConvRelu2d", "DequantStub", "Elemwise", "Linear", "LinearBn1d",
    "LinearBnRelu1d", "LinearRelu", "QATModule", "QuantStub",
]

# The exact integer eval path of these modules lives with the quantized layer, which registers it.
from ..quantized import qfloat_eval as _qfloat_eval  # noqa: E402,F401
