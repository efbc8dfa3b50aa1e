"""Executable specification of megq's integer kernels, in numpy.

Every function here computes, bit for bit, what the corresponding C++ kernel in
``megq.kernels`` computes (tests compare every ISA path against independent
numpy code and these functions). The QFloat model's eval forward uses the same
integer-grid arithmetic, which is what makes QFloat and Q agree exactly.
"""
from .concat import concat
from .conv import conv2d
from .depthwise import depthwise_conv2d
from .elementwise import add, fuse_add_relu, mul
from .gemm import gemm, requantize, requantize_multiplier
from .pooling import global_avg_pool2d, pool2d
from .quantize import dequantize, quantize, requantize_tensor
from .rounding import round_half_away_from_zero

__all__ = [
    "round_half_away_from_zero", "gemm", "requantize", "requantize_multiplier", "conv2d", "depthwise_conv2d",
    "quantize", "dequantize", "requantize_tensor", "add", "fuse_add_relu", "mul", "pool2d", "global_avg_pool2d",
    "concat",
]
