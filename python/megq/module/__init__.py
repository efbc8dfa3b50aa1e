"""megq.module (import as M): float modules with MegEngine's names; QAT and quantized variants live in the
``qat`` and ``quantized`` sub-packages added by the quantization layer and subclass these."""
from . import init
from .activation import HSwish, ReLU, ReLU6, Sigmoid
from .batchnorm import BatchNorm1d, BatchNorm2d
from .container import Sequential
from .conv import Conv2d, ConvRelu2d, ConvRelu62d
from .conv_bn import ConvBn2d, ConvBnRelu2d, ConvBnRelu62d
from .elemwise import Concat, Elemwise
from .fuse import fold_weight_bias, fuse_conv_bn_relu, fuse_linear_bn_relu, fuse_modules
from .linear import Linear, LinearRelu, LinearRelu6
from .linear_bn import LinearBn1d, LinearBnRelu1d
from .misc import Dropout, Flatten, Identity
from .module import HookHandle, Module
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .quant_dequant import DequantStub, QuantStub

__all__ = [
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Concat", "Conv2d", "ConvBn2d", "ConvBnRelu2d",
    "ConvBnRelu62d", "ConvRelu2d", "ConvRelu62d", "DequantStub", "Dropout", "Elemwise", "Flatten", "HSwish",
    "HookHandle", "Identity", "Linear", "LinearBn1d", "LinearBnRelu1d", "LinearRelu", "LinearRelu6", "MaxPool2d",
    "Module", "QuantStub", "ReLU", "ReLU6", "Sequential",
    "Sigmoid", "fold_weight_bias", "fuse_conv_bn_relu", "fuse_linear_bn_relu", "fuse_modules", "init",
]
