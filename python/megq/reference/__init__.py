"""Executable specification of megq's integer kernels, in numpy.

Every function here computes, bit for bit, what the corresponding C++ kernel in
``megq.kernels`` computes (tests compare every ISA path against independent
numpy code and these functions). The QFloat model's eval forward uses the same
integer-grid arithmetic, which is what makes QFloat and Q agree exactly.
"""
from .rounding import round_half_away_from_zero
from .gemm import gemm, requantize, requantize_multiplier
from .conv import conv2d

__all__ = ["round_half_away_from_zero", "gemm", "requantize", "requantize_multiplier", "conv2d"]
from .quantize import dequantize, quantize, requantize_tensor
__all__ += ["quantize", "dequantize", "requantize_tensor"]
from .elementwise import add, fuse_add_relu, mul
__all__ += ["add", "fuse_add_relu", "mul"]
from .pooling import global_avg_pool2d, pool2d
__all__ += ["pool2d", "global_avg_pool2d"]
from .concat import concat
__all__ += ["concat"]
from .depthwise import depthwise_conv2d
__all__ += ["depthwise_conv2d"]
