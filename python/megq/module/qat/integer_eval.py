"""The QFloat model's exact eval path: every quantized layer computed on the integer grid with
megq.reference, the numpy twin of the kernels' contract.

:func:`register_integer_forwards` (called when ``megq.module.qat`` loads) registers these functions with
:func:`megq.quantization.integer_eval.register_integer_forward`; they replace a QAT module's float
fake-quant forward when the module is in eval mode, its fake quants are enabled and its observers are not
collecting (see ``QATModule.quant_active``). Activations then flow between layers as
:class:`~megq.qtensor.QuantizedTensor` (backend "reference"), exactly as the Q model's do (backend
"kernels"): the weightless ops are :mod:`megq.functional.quantized`'s, and the weights are quantized by the
same :class:`~megq.quantization.IntegerLayer` the Q model is built from. So the int8 values of every layer
of the Q model equal QFloat's, bit for bit. A conv or linear layer whose input is a plain float tensor (no
QuantStub upstream) keeps MegEngine's float fake-quant forward; the Q model cannot run such a layer and says
so.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ... import reference
from ...functional.quantized import ELEMWISE_METHODS, concat, elemwise
from ...qtensor import QuantizedTensor
from ...quantization.integer_eval import register_integer_forward
from ...quantization.integer_layer import IntegerLayer, act_qparams
from ...tensor import Tensor
from .conv import Conv2d, ConvRelu2d
from .conv_bn import ConvBn2d, ConvBnRelu2d
from .elemwise import Concat, Elemwise
from .linear import Linear, LinearRelu
from .linear_bn import LinearBn1d, LinearBnRelu1d
from .quant_dequant import DequantStub, QuantStub

__all__ = ["register_integer_forwards"]


def _conv(module: Any, x: Any) -> Any:
    if not isinstance(x, QuantizedTensor):
        return module.forward(x)  # float input (no QuantStub upstream): MegEngine's fake-quant forward
    layer = IntegerLayer.from_qat(module)
    bias_q, multiplier, lo, hi = layer.for_input(x)
    conv = getattr(module, "conv", module)
    y = reference.conv2d(x.data, layer.weight_q, bias_q, multiplier, stride=conv.stride, padding=conv.padding,
                         dilation=conv.dilation, groups=conv.groups, input_zero_point=x.zero_point,
                         out_dtype=layer.out_dtype, out_zero_point=layer.out_zero_point, out_min=lo, out_max=hi)
    return layer.output(y, "reference")


def _linear(module: Any, x: Any) -> Any:
    if not isinstance(x, QuantizedTensor):
        return module.forward(x)  # float input (no QuantStub upstream): MegEngine's fake-quant forward
    if x.ndim != 2:
        raise ValueError(f"{type(module).__name__}: expected a 2-D (N, features) input, got shape {x.shape}")
    layer = IntegerLayer.from_qat(module)
    bias_q, multiplier, lo, hi = layer.for_input(x)
    y = reference.gemm(x.data, layer.weight_q.T, bias_q, multiplier, input_zero_point=x.zero_point,
                       out_dtype=layer.out_dtype, out_zero_point=layer.out_zero_point, out_min=lo, out_max=hi)
    return layer.output(y, "reference")


def _quant_stub(module: Any, x: Any) -> QuantizedTensor:
    s, z, qmin, qmax, dtype = act_qparams(module.get_activation_qparams(), type(module).__name__)
    data = reference.quantize(np.asarray(x.numpy() if isinstance(x, Tensor) else x, np.float32), s, z, dtype)
    np.clip(data, qmin, qmax, out=data)
    return QuantizedTensor(data, s, z, qmin, qmax, "reference")


def _dequant_stub(module: Any, x: Any) -> Tensor:
    if not isinstance(x, QuantizedTensor):  # nothing upstream was quantized: identity, as in float
        return x
    return Tensor(reference.dequantize(x.data, x.scale, x.zero_point))


def _elemwise(module: Any, *inputs: Any) -> QuantizedTensor:
    owner = type(module).__name__
    if module.method not in ELEMWISE_METHODS or len(inputs) != 2:
        raise ValueError(f"{owner}: {module.method!r} has no int8 kernel (supported: {ELEMWISE_METHODS}); call "
                         f".disable_quantize() on this module before quantize_qat to keep it float")
    s, z, qmin, qmax, dtype = act_qparams(module.get_activation_qparams(), owner)
    return elemwise(module.method, inputs[0], inputs[1], s, z, qmin, qmax, dtype, owner)


def _concat(module: Any, inps: Sequence[Any], axis: int = 0) -> QuantizedTensor:
    owner = type(module).__name__
    s, z, qmin, qmax, dtype = act_qparams(module.get_activation_qparams(), owner)
    return concat(inps, axis, s, z, qmin, qmax, dtype, owner)


def register_integer_forwards() -> None:
    """Register the exact integer eval forward of every QAT module class of megq (idempotent)."""
    for cls in (Conv2d, ConvRelu2d, ConvBn2d, ConvBnRelu2d):
        register_integer_forward(cls)(_conv)
    for cls in (Linear, LinearRelu, LinearBn1d, LinearBnRelu1d):
        register_integer_forward(cls)(_linear)
    register_integer_forward(QuantStub)(_quant_stub)
    register_integer_forward(DequantStub)(_dequant_stub)
    register_integer_forward(Elemwise)(_elemwise)
    register_integer_forward(Concat)(_concat)
