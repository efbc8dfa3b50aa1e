"""The QFloat model's exact eval path: every quantized layer computed on the integer grid.

:func:`register_integer_forwards` (called when ``megq.module.qat`` loads) registers these functions with
:func:`megq.quantization.integer_eval.register_integer_forward`; they replace a QAT module's float
fake-quant forward when the module is in eval mode, its fake quants are enabled and its observers are not
collecting (see ``QATModule.quant_active``). Activations then flow between layers as
:class:`~megq.qtensor.QuantizedTensor`, exactly as the Q model's do: the weightless ops are
:mod:`megq.functional.quantized`'s, and the weights are quantized by the same
:class:`~megq.quantization.IntegerLayer` the Q model is built from.

Backend (:func:`set_integer_eval_backend`): "kernels" (default) runs megq's C++ int8 kernels through prepared
calls (:func:`megq.kernels.prepare_conv2d` ...), as the Q model does, so QFloat eval costs about what the Q model
costs; "reference" runs megq.reference, the numpy twin of the kernels' contract, for validation. Both give the
int8 values of the Q model bit for bit. A conv or linear layer whose input is a plain float tensor (no QuantStub
upstream) keeps MegEngine's float fake-quant forward; the Q model cannot run such a layer and says so.

The kernels backend caches each layer's :class:`IntegerLayer` and packed weights per input quantization (in a
weak dictionary, so nothing is added to the module or its checkpoint). Every call first compares the module's
parameters, buffers and qparams with copies taken when the cache was filled, so a weight update, a new
calibration or a loaded state dict is never served stale; the comparison costs one pass over the weights, far
less than the convolution.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

from ... import reference
from ...functional.quantized import ELEMWISE_METHODS, concat, elemwise
from ...qtensor import QuantizedTensor
from ...quantization.integer_eval import register_integer_forward
from ...quantization.integer_layer import IntegerLayer, act_qparams
from ...tensor import Tensor
from ..module import Module
from .conv import Conv2d, ConvRelu2d, ConvRelu62d
from .conv_bn import ConvBn2d, ConvBnRelu2d, ConvBnRelu62d
from .elemwise import Concat, Elemwise
from .linear import Linear, LinearRelu, LinearRelu6
from .linear_bn import LinearBn1d, LinearBnRelu1d
from .quant_dequant import DequantStub, QuantStub

__all__ = ["register_integer_forwards", "set_integer_eval_backend", "get_integer_eval_backend"]

_BACKENDS = ("kernels", "reference")
_BACKEND = ["kernels"]


def set_integer_eval_backend(backend: str) -> str:
    """Choose who computes the QFloat model's exact eval path: "kernels" (megq's C++ int8 kernels, the default) or
    "reference" (megq.reference's numpy twin, slow, for validation). Returns the previous choice."""
    if backend not in _BACKENDS:
        raise ValueError(f"backend: expected one of {_BACKENDS}, got {backend!r}")
    prev = _BACKEND[0]
    _BACKEND[0] = backend
    return prev


def get_integer_eval_backend() -> str:
    """The backend of the exact eval path ("kernels" or "reference")."""
    return _BACKEND[0]


# -- kernels backend: IntegerLayer and prepared kernels cached per module ----------------------------------------

class _Cached:
    """A layer's IntegerLayer, the state it was built from, and its prepared kernels per input quantization."""

    __slots__ = ("state", "layer", "kernels")

    def __init__(self, state: List[Any], layer: IntegerLayer) -> None:
        self.state = state
        self.layer = layer
        self.kernels: Dict[Tuple[float, int, str], Callable[[np.ndarray], np.ndarray]] = {}


_CACHE: "weakref.WeakKeyDictionary[Any, _Cached]" = weakref.WeakKeyDictionary()


def _qparams_state(qp: Any) -> Tuple[Any, ...]:
    if qp is None:
        return (None,)
    meta = getattr(qp, "dtype_meta", None)
    return (np.array(getattr(qp, "scale", None), np.float32, copy=True),
            None if getattr(qp, "zero_point", None) is None else np.array(qp.zero_point, copy=True),
            getattr(meta, "name", None), getattr(qp, "mode", None))


def _same_qparams(a: Tuple[Any, ...], b: Tuple[Any, ...]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.shape == y.shape
                    and np.array_equal(x, y)):
                return False
        elif x != y:
            return False
    return True


def _tensors(module: Any) -> List[Tensor]:
    """Every tensor held by ``module`` or its sub-modules (weights, BN statistics, observer and fake-quant state).
    A direct walk of the attribute dicts: cheaper than ``named_parameters`` + ``named_buffers`` (this runs at every
    eval call of every layer) and at least as inclusive."""
    out: List[Tensor] = []
    stack = [module]
    seen = set()
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        for v in m.__dict__.values():
            if isinstance(v, Tensor):
                out.append(v)
            elif isinstance(v, Module):
                stack.append(v)
            elif isinstance(v, (list, tuple)):
                for item in v:
                    if isinstance(item, Tensor):
                        out.append(item)
                    elif isinstance(item, Module):
                        stack.append(item)
    return out


def _module_state(module: Any) -> List[Any]:
    """Everything an IntegerLayer is computed from: the module's tensors (weights, BN statistics, observer and
    fake-quant state), by identity and value, and its current weight and activation qparams."""
    tensors = _tensors(module)
    return [[(id(t), t.numpy()) for t in tensors], _qparams_state(module.get_weight_qparams()),
            _qparams_state(module.get_activation_qparams())]


def _unchanged(cached: _Cached, module: Any) -> bool:
    tensors = _tensors(module)
    saved, wq, aq = cached.state
    if len(tensors) != len(saved):
        return False
    for t, (tid, arr) in zip(tensors, saved):
        a = t.numpy()
        if id(t) != tid or a.shape != arr.shape or a.dtype != arr.dtype or not np.array_equal(a, arr):
            return False
    return (_same_qparams(wq, _qparams_state(module.get_weight_qparams()))
            and _same_qparams(aq, _qparams_state(module.get_activation_qparams())))


def _cached_layer(module: Any) -> _Cached:
    cached = _CACHE.get(module)
    if cached is None or not _unchanged(cached, module):
        state = _module_state(module)
        state[0] = [(tid, np.array(arr, copy=True)) for tid, arr in state[0]]
        cached = _Cached(state, IntegerLayer.from_qat(module))
        _CACHE[module] = cached
    return cached


def _prepared(module: Any, x: QuantizedTensor, build: Callable[[IntegerLayer, QuantizedTensor], Callable]
              ) -> Tuple[IntegerLayer, Callable[[np.ndarray], np.ndarray]]:
    cached = _cached_layer(module)
    key = (float(x.scale), x.zero_point, x.dtype)
    kernel = cached.kernels.get(key)
    if kernel is None:
        kernel = cached.kernels[key] = build(cached.layer, x)
    return cached.layer, kernel


def _build_conv(conv: Any) -> Callable[[IntegerLayer, QuantizedTensor], Callable]:
    def build(layer: IntegerLayer, x: QuantizedTensor) -> Callable[[np.ndarray], np.ndarray]:
        from ... import kernels  # here, not at the top: loads the compiled extension

        bias_q, multiplier, lo, hi = layer.for_input(x)
        pack_args = dict(input_dtype=x.dtype, input_zero_point=x.zero_point,
                         narrow_range=bool(layer.weight_q.min() > -128))
        bound = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, out_dtype=layer.out_dtype,
                     out_zero_point=layer.out_zero_point, out_min=lo, out_max=hi)
        if conv.groups > 1 and layer.weight_q.shape[1] == 1:  # depthwise: one input channel per group
            packed = kernels.pack_depthwise_weights(layer.weight_q, bias_q, multiplier, in_channels=conv.groups,
                                                    **pack_args)
            return kernels.prepare_depthwise_conv2d(packed, **bound)
        packed = kernels.pack_conv2d_weights(layer.weight_q, bias_q, multiplier, groups=conv.groups, **pack_args)
        return kernels.prepare_conv2d(packed, **bound)

    return build


def _build_linear(layer: IntegerLayer, x: QuantizedTensor) -> Callable[[np.ndarray], np.ndarray]:
    from ... import kernels

    bias_q, multiplier, lo, hi = layer.for_input(x)
    packed = kernels.pack_gemm_weights(np.ascontiguousarray(layer.weight_q.T), bias_q, multiplier,
                                       input_dtype=x.dtype, input_zero_point=x.zero_point,
                                       narrow_range=bool(layer.weight_q.min() > -128))
    return kernels.prepare_gemm(packed, out_dtype=layer.out_dtype, out_zero_point=layer.out_zero_point, out_min=lo,
                                out_max=hi)


def _conv(module: Any, x: Any) -> Any:
    if not isinstance(x, QuantizedTensor):
        return module.forward(x)  # float input (no QuantStub upstream): MegEngine's fake-quant forward
    conv = getattr(module, "conv", module)
    if x.backend == "kernels":
        layer, kernel = _prepared(module, x, _build_conv(conv))
        return layer.output(kernel(x.data), "kernels")
    layer = IntegerLayer.from_qat(module)
    bias_q, multiplier, lo, hi = layer.for_input(x)
    y = reference.conv2d(x.data, layer.weight_q, bias_q, multiplier, stride=conv.stride, padding=conv.padding,
                         dilation=conv.dilation, groups=conv.groups, input_zero_point=x.zero_point,
                         out_dtype=layer.out_dtype, out_zero_point=layer.out_zero_point, out_min=lo, out_max=hi)
    return layer.output(y, "reference")


def _linear(module: Any, x: Any) -> Any:
    if not isinstance(x, QuantizedTensor):
        return module.forward(x)  # float input (no QuantStub upstream): MegEngine's fake-quant forward
    if x.ndim != 2:
        raise ValueError(f"{type(module).__name__}: expected a 2-D (N, features) input, got shape {x.shape}")
    if x.backend == "kernels":
        layer, kernel = _prepared(module, x, _build_linear)
        return layer.output(kernel(x.data), "kernels")
    layer = IntegerLayer.from_qat(module)
    bias_q, multiplier, lo, hi = layer.for_input(x)
    y = reference.gemm(x.data, layer.weight_q.T, bias_q, multiplier, input_zero_point=x.zero_point,
                       out_dtype=layer.out_dtype, out_zero_point=layer.out_zero_point, out_min=lo, out_max=hi)
    return layer.output(y, "reference")


def _quant_stub(module: Any, x: Any) -> QuantizedTensor:
    s, z, qmin, qmax, dtype = act_qparams(module.get_activation_qparams(), type(module).__name__)
    values = np.asarray(x.numpy() if isinstance(x, Tensor) else x, np.float32)
    backend = _BACKEND[0]
    if backend == "kernels":
        from ... import kernels

        data = kernels.quantize(values, s, z, dtype)
    else:
        data = reference.quantize(values, s, z, dtype)
    np.clip(data, qmin, qmax, out=data)
    return QuantizedTensor(data, s, z, qmin, qmax, backend)


def _dequant_stub(module: Any, x: Any) -> Tensor:
    if not isinstance(x, QuantizedTensor):  # a float input: the float forward (identity that marks x dequantized)
        return module.forward(x)
    if x.backend == "kernels":
        from ... import kernels

        return Tensor(kernels.dequantize(x.data, x.scale, x.zero_point))
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
    for cls in (Conv2d, ConvRelu2d, ConvRelu62d, ConvBn2d, ConvBnRelu2d, ConvBnRelu62d):
        register_integer_forward(cls)(_conv)
    for cls in (Linear, LinearRelu, LinearRelu6, LinearBn1d, LinearBnRelu1d):
        register_integer_forward(cls)(_linear)
    register_integer_forward(QuantStub)(_quant_stub)
    register_integer_forward(DequantStub)(_dequant_stub)
    register_integer_forward(Elemwise)(_elemwise)
    register_integer_forward(Concat)(_concat)
