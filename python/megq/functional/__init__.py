"""megq.functional (import as F): differentiable numpy ops with MegEngine's names and signatures.

A :class:`~megq.qtensor.QuantizedTensor` given to pooling, flatten, reshape or relu runs the int8 op of
:mod:`megq.functional.quantized` instead (Q models and the QFloat model's exact eval path).
"""
from . import elemwise, loss, math, nn, normalization, pooling, quantized, tensor_ops  # noqa: F401  (F.quantized ...)
from ._parallel import limit_blas_threads
from .conv import conv2d
from .elemwise import abs, add, clip, div, exp, hswish, log, maximum, minimum, mul, neg, pow, relu, relu6, sigmoid, sub
from .loss import cross_entropy, log_softmax, softmax, topk_accuracy
from .math import matmul, max, mean, sum, topk
from .nn import dropout, linear
from .normalization import batch_norm
from .pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from .tensor_ops import concat, expand_dims, flatten, reshape, squeeze, transpose

__all__ = [
    "abs", "adaptive_avg_pool2d", "add", "avg_pool2d", "batch_norm", "clip", "concat", "conv2d", "cross_entropy",
    "div", "dropout", "exp", "expand_dims", "flatten", "hswish", "linear", "log", "log_softmax", "matmul", "max",
    "max_pool2d", "maximum", "mean", "minimum", "mul", "neg", "pow", "relu", "relu6", "reshape", "sigmoid",
    "softmax", "squeeze", "sub", "sum", "topk", "topk_accuracy", "transpose", "limit_blas_threads",
]
