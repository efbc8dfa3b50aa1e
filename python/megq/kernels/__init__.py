"""megq's int8 CPU kernels: a documented, checked wrapper over the extension ``megq._C``.

One module per kernel family; everything public is re-exported here:

* :mod:`megq.kernels.runtime` -- ISA selection (``cpu_info``, ``set_isa``, ``use_isa``),
  threads, peak measurement;
* :mod:`megq.kernels.gemm` -- int8 GEMM with int32 accumulation and requantization;
* :mod:`megq.kernels.conv` -- int8 conv2d (NHWC) on the GEMM engine;
* :mod:`megq.kernels.prepare` -- ``prepare_gemm`` / ``prepare_conv2d`` / ``prepare_depthwise_conv2d``: arguments
  checked once, then a cheap call per input.

Every kernel has a numpy twin in :mod:`megq.reference` that defines its result bit for bit.
"""
from ..reference.gemm import requantize_multiplier
from .runtime import (active_isa, cpu_info, get_num_threads, measure_peak_gops, set_isa,
                      set_num_threads, use_isa)
from .gemm import MAX_SAFE_K, PackedGemmWeights, gemm, pack_gemm_weights, relu_bounds
from .conv import PackedConv2dWeights, conv2d, pack_conv2d_weights

__all__ = [
    "MAX_SAFE_K", "PackedConv2dWeights", "PackedGemmWeights", "conv2d", "pack_conv2d_weights", "active_isa", "cpu_info", "gemm", "get_num_threads",
    "measure_peak_gops", "pack_gemm_weights", "relu_bounds", "requantize_multiplier", "set_isa",
    "set_num_threads", "use_isa",
]
# Other kernel families register their exports below.
from .quantize import dequantize, quantize, requantize
__all__ += ["quantize", "dequantize", "requantize"]
from .elementwise import add, fuse_add_relu, mul
__all__ += ["add", "fuse_add_relu", "mul"]
from .pooling import avg_pool2d, global_avg_pool2d, max_pool2d
__all__ += ["max_pool2d", "avg_pool2d", "global_avg_pool2d"]
from .concat import concat
__all__ += ["concat"]
from .depthwise import PackedDepthwiseWeights, depthwise_conv2d, pack_depthwise_weights
__all__ += ["PackedDepthwiseWeights", "pack_depthwise_weights", "depthwise_conv2d"]
from .prepare import prepare_conv2d, prepare_depthwise_conv2d, prepare_gemm
__all__ += ["prepare_gemm", "prepare_conv2d", "prepare_depthwise_conv2d"]
from .runtime import MAX_NUM_THREADS, MAX_OUTPUT_BYTES
__all__ += ["MAX_NUM_THREADS", "MAX_OUTPUT_BYTES"]
