"""megq's int8 CPU kernels: a documented, checked wrapper over the extension ``megq._C``.

One module per kernel family; everything public is re-exported here:

* :mod:`megq.kernels.runtime` -- ISA selection (``cpu_info``, ``set_isa``, ``use_isa``),
  threads, peak measurement;
* :mod:`megq.kernels.gemm` -- int8 GEMM with int32 accumulation and requantization;
* :mod:`megq.kernels.conv` -- int8 conv2d (NHWC) on the GEMM engine;
* :mod:`megq.kernels.prepare` -- ``prepare_gemm`` / ``prepare_conv2d`` / ``prepare_depthwise_conv2d``: arguments
  checked once, then a cheap call per input;
* :mod:`megq.kernels.plan` -- ``Plan``: a whole forward's kernel calls, replayed by one call.

Every kernel has a numpy twin in :mod:`megq.reference` that defines its result bit for bit.
"""
from ..reference.gemm import requantize_multiplier
from .concat import concat
from .conv import PackedConv2dWeights, conv2d, pack_conv2d_weights
from .depthwise import PackedDepthwiseWeights, depthwise_conv2d, pack_depthwise_weights
from .elementwise import add, fuse_add_relu, mul
from .gemm import MAX_SAFE_K, PackedGemmWeights, gemm, pack_gemm_weights, relu_bounds
from .plan import Plan
from .pooling import avg_pool2d, global_avg_pool2d, max_pool2d
from .prepare import prepare_conv2d, prepare_depthwise_conv2d, prepare_gemm
from .quantize import dequantize, quantize, requantize
from .runtime import (
                      MAX_NUM_THREADS,
                      MAX_OUTPUT_BYTES,
                      active_isa,
                      cpu_info,
                      get_num_threads,
                      measure_peak_gops,
                      set_isa,
                      set_num_threads,
                      use_isa,
)

__all__ = [
    # runtime: ISA, threads, limits
    "active_isa", "cpu_info", "get_num_threads", "measure_peak_gops", "set_isa", "set_num_threads", "use_isa",
    "MAX_NUM_THREADS", "MAX_OUTPUT_BYTES", "MAX_SAFE_K",
    # GEMM and conv
    "PackedGemmWeights", "pack_gemm_weights", "gemm", "relu_bounds", "requantize_multiplier",
    "PackedConv2dWeights", "pack_conv2d_weights", "conv2d",
    "PackedDepthwiseWeights", "pack_depthwise_weights", "depthwise_conv2d",
    "prepare_gemm", "prepare_conv2d", "prepare_depthwise_conv2d",
    # the other int8 ops
    "quantize", "dequantize", "requantize", "add", "fuse_add_relu", "mul", "max_pool2d", "avg_pool2d",
    "global_avg_pool2d", "concat",
    # prepared execution plans of whole Q models
    "Plan",
]
