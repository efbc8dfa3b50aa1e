"""``export_onnx``: a megq float, QFloat or Q model as an ONNX graph (opset :data:`OPSET`).

The model is traced: it runs once on ``example_input`` while every leaf module call (convolutions, linear layers,
batch norm, activations, pooling, Elemwise, Concat, Quant/DequantStub, Flatten, Identity, Dropout) and every call
of the ``megq.functional`` ops a forward typically makes between modules (``flatten``, ``reshape``, pooling,
``relu``/``relu6``, ``add``, ``concat``...) is recorded. A forward that computes with anything else (a Tensor
operator, numpy) cannot be traced: the first recorded op that meets a value it did not see being produced raises a
``ValueError`` naming that op.

Q models are written in the QDQ format (ONNX Runtime's recommended int8 format; it fuses each
``DequantizeLinear -> op -> QuantizeLinear`` group into its int8 kernel, e.g. QLinearConv, and runs it as fast as
the equivalent QLinear* graph):

* activations are int8/uint8 tensors in NCHW order with megq's per-tensor scale and zero point;
* a conv / linear layer is ``DQ(x) -> Conv|Gemm(DQ(W_q int8, per-channel scales, axis 0), DQ(b_q int32, scale
  s_x*s_w)) -> Q(s_y, z_y)`` with megq's own integer weights and bias (the ones its kernels use);
* a fused activation (ReLU, ReLU6, the ReLU of FUSE_ADD_RELU) is megq's clamp bound ``[lo, hi]`` applied as an
  integer ``Clip`` after the QuantizeLinear: clamping after rounding is what megq computes, so it is exact;
* max pooling, flatten and reshape run on the integers directly; average pooling and Elemwise/Concat as
  ``DQ -> op -> Q`` (ONNX Runtime's QLinearAveragePool / QLinearAdd / QLinearConcat).

ONNX Runtime then reproduces megq's int8 values except where ``acc * M`` is an exact .5 tie (ONNX rounds half to
even, megq half away from zero) and, for Add/Mul, where its different float evaluation order lands on the other side
of a rounding boundary: 1 LSB either way (measured in docs/interop.md). A QFloat model exports the graph of the Q
model ``quantize`` makes of it (its eval forward computes the same integers).
"""
from __future__ import annotations

import contextlib
import copy
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..module.module import Module
from ..module.quantized.plan import layer_by_layer
from ..qtensor import QuantizedTensor
from ..tensor import Tensor

__all__ = ["OPSET", "export_onnx"]

#: The ONNX opset the exporter writes (per-channel QDQ needs >= 13; int8 MaxPool/Clip >= 12; HardSwish >= 14).
OPSET = 17


def _activation(module: Any) -> Optional[str]:
    """The activation fused into a float/QAT module: "relu", "relu6" or None (the class attribute
    ``fused_activation`` where the class has one, else the MegEngine-style class name)."""
    act = getattr(type(module), "fused_activation", "?")
    if act != "?":
        return act
    name = type(module).__name__
    return "relu6" if "Relu6" in name else "relu" if "Relu" in name else None


class _Value:
    __slots__ = ("name", "obj", "quant")

    def __init__(self, name: str, obj: Any, quant: Optional[Tuple[float, int, str]]) -> None:
        self.name, self.obj, self.quant = name, obj, quant  # obj kept alive so its id() stays unique


class _Builder:
    """Collects ONNX nodes and initializers while the model runs."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: List[Any] = []
        self.inits: List[Any] = []
        self.values: Dict[int, _Value] = {}
        self.counter = 0
        self.depth = 0  # > 0 while inside a recorded leaf (its inner calls are not recorded)
        self.batch: Optional[int] = None
        self.int8_as_uint8 = True

    # -- activation storage: megq's int8 values v are written as uint8 v + 128 with zero point z + 128 (the same
    # real values, the same rounding: round(x/s) + z + 128), unless the caller keeps int8 ------------------------
    def act_dtype(self, dtype: str) -> str:
        return "uint8" if dtype == "int8" and self.int8_as_uint8 else dtype

    def act_shift(self, dtype: str) -> int:
        return 128 if dtype == "int8" and self.int8_as_uint8 else 0

    # -- names and constants -------------------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}_{self.counter}"

    def const(self, hint: str, array: np.ndarray) -> str:
        name = self.fresh(hint)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: Sequence[str], hint: str, n_out: int = 1, **attrs: Any) -> List[str]:
        outs = [self.fresh(hint) for _ in range(n_out)]
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), outs, name=self.fresh(f"{hint}/{op}"),
                                                     **attrs))
        return outs

    # -- value bookkeeping ---------------------------------------------------------------------------------------
    def bind(self, obj: Any, name: str) -> None:
        quant = None
        if isinstance(obj, QuantizedTensor):
            quant = (np.float32(obj.scale), int(obj.zero_point), obj.dtype)
        self.values[id(obj)] = _Value(name, obj, quant)

    def name_of(self, obj: Any, op: str) -> str:
        v = self.values.get(id(obj))
        if v is None or v.obj is not obj:
            raise ValueError(f"export_onnx: {op} received a value that no traced op produced: the forward computes "
                             f"it with an operation export_onnx cannot trace (a Tensor operator, numpy, an "
                             f"unsupported module); use megq modules or megq.functional ops")
        return v.name

    # -- QDQ helpers -----------------------------------------------------------------------------------------------
    def qparams(self, hint: str, scale: Any, zero_point: Any, dtype: str, axis_len: int = 0) -> Tuple[str, str]:
        np_dtype = {"int8": np.int8, "uint8": np.uint8, "int32": np.int32}[dtype]
        s = np.asarray(scale, np.float32)
        z = np.asarray(zero_point, np_dtype)
        if axis_len:
            s, z = s.reshape(axis_len), np.broadcast_to(z, (axis_len,)).copy()
        return self.const(f"{hint}_scale", s), self.const(f"{hint}_zero_point", z)

    def dequant(self, x: QuantizedTensor, hint: str) -> str:
        s, z = self.qparams(hint, x.scale, x.zero_point + self.act_shift(x.dtype), self.act_dtype(x.dtype))
        return self.node("DequantizeLinear", [self.name_of(x, hint), s, z], hint)[0]

    def quant(self, y_float: str, y: QuantizedTensor, hint: str, lo: Optional[int] = None,
              hi: Optional[int] = None, tie_nudge: float = 0.0) -> str:
        """QuantizeLinear to ``y``'s qparams, then the integer clamp ``[lo, hi]`` where it is narrower than the
        storage type (fused activations, narrow dtypes such as qint4 kept in 8 bits). ``tie_nudge`` > 0 writes the
        scale ``s * (1 - tie_nudge)`` (see :func:`_pool_tie_nudge`)."""
        scale = np.float32(y.scale) * np.float32(1.0 - tie_nudge) if tie_nudge else y.scale
        s, z = self.qparams(hint, scale, y.zero_point + self.act_shift(y.dtype), self.act_dtype(y.dtype))
        out = self.node("QuantizeLinear", [y_float, s, z], hint)[0]
        return self.clamp(out, y.dtype, max(y.qmin, lo if lo is not None else y.qmin),
                          min(y.qmax, hi if hi is not None else y.qmax), hint)

    def clamp(self, name: str, dtype: str, lo: int, hi: int, hint: str) -> str:
        """Integer ``Clip`` of an activation to megq's bounds ``[lo, hi]`` (in megq's storage ``dtype``)."""
        full = (-128, 127) if dtype == "int8" else (0, 255)
        if (lo, hi) == full:
            return name
        shift = self.act_shift(dtype)
        np_dtype = np.int8 if self.act_dtype(dtype) == "int8" else np.uint8
        return self.node("Clip", [name, self.const(f"{hint}_min", np.asarray(lo + shift, np_dtype)),
                                  self.const(f"{hint}_max", np.asarray(hi + shift, np_dtype))], hint)[0]

    def float_activation(self, name: str, act: Optional[str], hint: str) -> str:
        if act is None:
            return name
        if act == "relu":
            return self.node("Relu", [name], hint)[0]
        if act == "relu6":
            return self.node("Clip", [name, self.const(f"{hint}_min", np.asarray(0, np.float32)),
                                      self.const(f"{hint}_max", np.asarray(6, np.float32))], hint)[0]
        raise ValueError(f"export_onnx: {hint}: fused activation {act!r} has no ONNX translation")


# ---------------------------------------------------------------------------------------------------------------
# float leaf modules
def _conv_attrs(conv: Any) -> Dict[str, Any]:
    ph, pw = conv.padding
    return dict(kernel_shape=list(conv.kernel_size), strides=list(conv.stride), pads=[ph, pw, ph, pw],
                dilations=list(conv.dilation), group=conv.groups)


def _np(t: Any) -> np.ndarray:
    return np.asarray(t.numpy(), np.float32)


def _bn_node(b: _Builder, x: str, bn: Any, hint: str) -> str:
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"export_onnx: {hint}: a BatchNorm without running statistics cannot be exported")
    c = bn.num_features
    gamma = _np(bn.weight) if bn.weight is not None else np.ones(c, np.float32)
    beta = _np(bn.bias) if bn.bias is not None else np.zeros(c, np.float32)
    ins = [x, b.const(f"{hint}_gamma", gamma), b.const(f"{hint}_beta", beta),
           b.const(f"{hint}_mean", _np(bn.running_mean).reshape(c)),
           b.const(f"{hint}_var", _np(bn.running_var).reshape(c))]
    return b.node("BatchNormalization", ins, hint, epsilon=float(bn.eps))[0]


def _float_conv(b: _Builder, m: Any, x: str, hint: str) -> str:
    conv = getattr(m, "conv", m)
    ins = [x, b.const(f"{hint}_weight", _np(conv.weight))]
    if conv.bias is not None:
        ins.append(b.const(f"{hint}_bias", _np(conv.bias)))
    y = b.node("Conv", ins, hint, **_conv_attrs(conv))[0]
    if hasattr(m, "bn"):
        y = _bn_node(b, y, m.bn, hint)
    return b.float_activation(y, _activation(m), hint)


def _float_linear(b: _Builder, m: Any, x: str, hint: str, ndim: int) -> str:
    lin = getattr(m, "linear", m)
    w = _np(lin.weight)
    bias = _np(lin.bias) if lin.bias is not None else None
    if ndim == 2:
        ins = [x, b.const(f"{hint}_weight", w)] + ([b.const(f"{hint}_bias", bias)] if bias is not None else [])
        y = b.node("Gemm", ins, hint, transB=1)[0]
    else:
        y = b.node("MatMul", [x, b.const(f"{hint}_weight_t", np.ascontiguousarray(w.T))], hint)[0]
        if bias is not None:
            y = b.node("Add", [y, b.const(f"{hint}_bias", bias)], hint)[0]
    if hasattr(m, "bn"):
        y = _bn_node(b, y, m.bn, hint)
    return b.float_activation(y, _activation(m), hint)


_ELEMWISE_FLOAT = {
    "ADD": ["Add"], "SUB": ["Sub"], "MUL": ["Mul"], "TRUE_DIV": ["Div"], "MAX": ["Max"], "MIN": ["Min"],
    "NEGATE": ["Neg"], "ABS": ["Abs"], "RELU": ["Relu"], "EXP": ["Exp"], "LOG": ["Log"], "SIGMOID": ["Sigmoid"],
    "H_SWISH": ["HardSwish"], "FUSE_ADD_RELU": ["Add", "Relu"], "FUSE_ADD_SIGMOID": ["Add", "Sigmoid"],
    "FUSE_ADD_H_SWISH": ["Add", "HardSwish"],
}


def _float_elemwise(b: _Builder, method: str, ins: List[str], hint: str) -> str:
    if method == "FUSE_MUL_ADD3":
        return b.node("Add", [b.node("Mul", ins[:2], hint)[0], ins[2]], hint)[0]
    ops = _ELEMWISE_FLOAT.get(method)
    if ops is None:
        raise ValueError(f"export_onnx: {hint}: Elemwise {method!r} has no ONNX translation")
    y = b.node(ops[0], ins, hint)[0]
    for op in ops[1:]:
        y = b.node(op, [y], hint)[0]
    return y


# ---------------------------------------------------------------------------------------------------------------
# quantized leaf modules (QDQ)
def _q_weighted(b: _Builder, m: Any, x: QuantizedTensor, y: QuantizedTensor, hint: str, kind: str) -> str:
    layer = m.layer
    bias_q, _, lo, hi = layer.for_input(x)
    oc = layer.weight_q.shape[0]
    per_channel = np.asarray(layer.weight_scale).size > 1
    xf = b.dequant(x, f"{hint}_input")
    w = b.const(f"{hint}_weight_q", layer.weight_q.astype(np.int8))
    ws, wz = b.qparams(f"{hint}_weight", layer.weight_scale, 0, "int8", oc if per_channel else 0)
    wf = b.node("DequantizeLinear", [w, ws, wz], f"{hint}_weight", **({"axis": 0} if per_channel else {}))[0]
    ins = [xf, wf]
    if bias_q is not None:
        acc_scale = (np.float32(x.scale) * np.asarray(layer.weight_scale, np.float32)).astype(np.float32)
        bq = b.const(f"{hint}_bias_q", bias_q.astype(np.int32))
        bs, bz = b.qparams(f"{hint}_bias", np.broadcast_to(acc_scale, (oc,)), 0, "int32", oc)
        ins.append(b.node("DequantizeLinear", [bq, bs, bz], f"{hint}_bias", axis=0)[0])
    if kind == "conv":
        geom = dict(kernel_shape=list(layer.weight_q.shape[2:]), strides=list(m.stride),
                    pads=[m.padding[0], m.padding[1], m.padding[0], m.padding[1]], dilations=list(m.dilation),
                    group=m.groups)
        yf = b.node("Conv", ins, hint, **geom)[0]
    else:
        yf = b.node("Gemm", ins, hint, transB=1)[0]
    return b.quant(yf, y, hint, lo, hi)


def _q_elemwise(b: _Builder, method: str, a: QuantizedTensor, c: QuantizedTensor, y: QuantizedTensor,
                hint: str) -> str:
    fa, fc = b.dequant(a, f"{hint}_a"), b.dequant(c, f"{hint}_b")
    op = {"ADD": "Add", "FUSE_ADD_RELU": "Add", "MUL": "Mul"}[method]
    yf = b.node(op, [fa, fc], hint)[0]
    lo = max(y.qmin, y.zero_point) if method == "FUSE_ADD_RELU" else None
    return b.quant(yf, y, hint, lo)


# ---------------------------------------------------------------------------------------------------------------
# recording
def _record_module(b: _Builder, m: Module, hint: str, args: tuple, out: Any) -> Optional[str]:
    """ONNX nodes for one leaf module call; returns the output name, or None if ``m`` is not a leaf."""
    from .. import module as M
    from ..module import quantized as MQ

    x = args[0] if args else None
    if isinstance(m, MQ.QuantizedModule):
        if isinstance(m, MQ.QuantStub):
            s, z = b.qparams(hint, out.scale, out.zero_point + b.act_shift(out.dtype), b.act_dtype(out.dtype))
            q = b.node("QuantizeLinear", [b.name_of(x, hint), s, z], hint)[0]
            return b.clamp(q, out.dtype, out.qmin, out.qmax, hint)
        if isinstance(m, MQ.DequantStub):
            return b.dequant(x, hint)
        if isinstance(m, MQ.Conv2d):
            return _q_weighted(b, m, x, out, hint, "conv")
        if isinstance(m, MQ.Linear):
            return _q_weighted(b, m, x, out, hint, "gemm")
        if isinstance(m, MQ.Elemwise):
            return _q_elemwise(b, m.method, args[0], args[1], out, hint)
        if isinstance(m, MQ.Concat):
            axis = args[1] if len(args) > 1 else 0
            parts = [b.dequant(t, f"{hint}_in{i}") for i, t in enumerate(x)]
            return b.quant(b.node("Concat", parts, hint, axis=int(axis))[0], out, hint)
        raise ValueError(f"export_onnx: {hint}: quantized module {type(m).__name__} has no ONNX translation")
    if isinstance(m, (M.Identity, M.Dropout, M.QuantStub, M.DequantStub)):
        return b.name_of(x, hint)  # eval-mode identities (stubs are identities in a float model)
    if isinstance(m, (M.Conv2d, M.ConvBn2d, M.ConvBnRelu2d)) or _is_fused(m, "ConvBn"):
        return _float_conv(b, m, b.name_of(x, hint), hint)
    if isinstance(m, (M.Linear, M.LinearBn1d, M.LinearBnRelu1d)) or _is_fused(m, "LinearBn"):
        return _float_linear(b, m, b.name_of(x, hint), hint, x.ndim)
    if isinstance(m, (M.BatchNorm1d, M.BatchNorm2d)):
        return _bn_node(b, b.name_of(x, hint), m, hint)
    if isinstance(m, M.Elemwise):
        return _float_elemwise(b, m.method, [b.name_of(t, hint) for t in args], hint)
    if isinstance(m, M.Concat):
        axis = args[1] if len(args) > 1 else 0
        return _functional(b, "concat", (x, axis), {}, out, hint)
    simple = {M.ReLU: "relu", M.ReLU6: "relu6", M.Sigmoid: "sigmoid", M.HSwish: "hswish", M.Flatten: "flatten",
              M.MaxPool2d: "max_pool2d", M.AvgPool2d: "avg_pool2d", M.AdaptiveAvgPool2d: "adaptive_avg_pool2d"}
    for cls, fn in simple.items():
        if type(m) is cls:
            if fn == "flatten":
                return _functional(b, fn, (x, m.start_axis, m.end_axis), {}, out, hint)
            if fn in ("max_pool2d",):
                return _functional(b, fn, (x, m.kernel_size, m.stride, m.padding), {}, out, hint)
            if fn == "avg_pool2d":
                return _functional(b, fn, (x, m.kernel_size, m.stride, m.padding, m.mode), {}, out, hint)
            if fn == "adaptive_avg_pool2d":
                return _functional(b, fn, (x, m.oshp), {}, out, hint)
            return _functional(b, fn, (x,), {}, out, hint)
    return None


def _is_fused(m: Any, prefix: str) -> bool:
    return type(m).__name__.startswith(prefix) and (hasattr(m, "conv") or hasattr(m, "linear"))


def _pair(v: Any) -> Tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _functional(b: _Builder, fn: str, args: tuple, kwargs: dict, out: Any, hint: str) -> str:
    """ONNX nodes for one ``megq.functional`` op (float or quantized input)."""
    params = dict(zip(["x", "y"], args))
    x = args[0]
    quant = isinstance(x, QuantizedTensor)
    if fn in ("relu", "relu6", "sigmoid", "hswish"):
        if quant:  # an integer clamp on the stored values, with the bounds megq's quantized op applied
            if fn not in ("relu", "relu6"):
                raise ValueError(f"export_onnx: {hint}: {fn} of a quantized tensor has no int8 form")
            lo, hi = _quantized_bounds(x, fn)
            return b.clamp(b.name_of(x, hint), x.dtype, lo, hi, hint)
        if fn in ("relu", "relu6"):
            return b.float_activation(b.name_of(x, hint), fn, hint)
        return b.node({"sigmoid": "Sigmoid", "hswish": "HardSwish"}[fn], [b.name_of(x, hint)], hint)[0]
    if fn == "flatten":
        start = args[1] if len(args) > 1 else kwargs.get("start_axis", 0)
        end = args[2] if len(args) > 2 else kwargs.get("end_axis", -1)
        ndim = len(x.shape)
        if end % ndim == ndim - 1:
            return b.node("Flatten", [b.name_of(x, hint)], hint, axis=int(start) % ndim)[0]
        return _reshape(b, x, out.shape, hint)
    if fn == "reshape":
        return _reshape(b, x, out.shape, hint)
    if fn in ("max_pool2d", "avg_pool2d"):
        k = _pair(args[1] if len(args) > 1 else kwargs["kernel_size"])
        stride = args[2] if len(args) > 2 else kwargs.get("stride")
        s = k if stride is None else _pair(stride)
        p = _pair(args[3] if len(args) > 3 else kwargs.get("padding", 0))
        attrs = dict(kernel_shape=list(k), strides=list(s), pads=[p[0], p[1], p[0], p[1]])
        if fn == "max_pool2d":  # integer max commutes with the affine map: run it on the stored integers
            return b.node("MaxPool", [b.name_of(x, hint)], hint, **attrs)[0]
        mode = args[4] if len(args) > 4 else kwargs.get("mode", "average_count_exclude_padding")
        attrs["count_include_pad"] = int(mode == "average")
        if quant:
            return b.quant(b.node("AveragePool", [b.dequant(x, hint)], hint, **attrs)[0], out, hint,
                           tie_nudge=_pool_tie_nudge(k[0] * k[1], p != (0, 0)))
        return b.node("AveragePool", [b.name_of(x, hint)], hint, **attrs)[0]
    if fn == "adaptive_avg_pool2d":
        oh, ow = _pair(args[1] if len(args) > 1 else kwargs["oshp"])
        h, w = x.shape[2], x.shape[3]
        if (oh, ow) == (1, 1):
            src = b.dequant(x, hint) if quant else b.name_of(x, hint)
            y = b.node("GlobalAveragePool", [src], hint)[0]
        elif h % oh == 0 and w % ow == 0:
            attrs = dict(kernel_shape=[h // oh, w // ow], strides=[h // oh, w // ow])
            src = b.dequant(x, hint) if quant else b.name_of(x, hint)
            y = b.node("AveragePool", [src], hint, **attrs)[0]
        else:
            raise ValueError(f"export_onnx: {hint}: adaptive_avg_pool2d from {h}x{w} to {oh}x{ow} (bins of unequal "
                             f"size) has no ONNX pooling equivalent")
        return b.quant(y, out, hint, tie_nudge=_pool_tie_nudge((h // oh) * (w // ow), False)) if quant else y
    if fn == "concat":
        inps = list(args[0])
        axis = args[1] if len(args) > 1 else kwargs.get("axis", 0)
        if any(isinstance(t, QuantizedTensor) for t in inps):
            raise ValueError(f"export_onnx: {hint}: F.concat of quantized tensors: use an M.Concat module")
        return b.node("Concat", [b.name_of(t, hint) for t in inps], hint, axis=int(axis))[0]
    if fn in ("add", "sub", "mul", "div", "maximum", "minimum"):
        if quant or isinstance(params.get("y"), QuantizedTensor):
            raise ValueError(f"export_onnx: {hint}: F.{fn} of quantized tensors: use an M.Elemwise module")
        ins = []
        for v in args[:2]:
            if isinstance(v, (Tensor, QuantizedTensor)):
                ins.append(b.name_of(v, hint))
            else:
                ins.append(b.const(f"{hint}_const", np.asarray(v, np.float32)))
        op = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "maximum": "Max", "minimum": "Min"}[fn]
        return b.node(op, ins, hint)[0]
    raise ValueError(f"export_onnx: {hint}: F.{fn} is not supported")


def _quantized_bounds(x: QuantizedTensor, fn: str) -> Tuple[int, int]:
    """The clamp ``[lo, hi]`` megq's quantized relu / relu6 apply to ``x`` (defined once, in megq.functional)."""
    from ..functional import quantized as FQ

    return FQ.activation_bounds(x.scale, x.zero_point, x.qmin, x.qmax, fn)


def _pool_tie_nudge(count: int, padded: bool) -> float:
    """Relative enlargement of an average pool's requantized mean that makes ONNX Runtime's round-half-to-even land
    where megq's round-half-away-from-zero does on exact .5 ties.

    A mean of integers over ``count`` taps is a multiple of ``1/count``: with an even count .5 ties are common (a
    quarter of a 2x2 pool's outputs), and every other value is at least ``1/(2 count)`` from a .5 boundary. Writing
    the output scale ``s * (1 - e)`` multiplies the mean by about ``1 + e``: an exact tie moves away from zero (as
    megq rounds it), and no other value crosses a boundary while ``255 e < 1/(2 count)``, so
    ``e = min(2^-13, 1/(1020 count))``. ONNX Runtime 1.32's QLinearAveragePool computes the mean with a relative
    error near 2^-16 (measured: a tie at 0.5 rounds away from zero for ``e >= 2^-15``, not for ``2^-16``), so the
    nudge settles the ties of windows up to 16 taps (2x2, 3x3, 4x4) and is harmless, if not always effective, above.
    Away from zero is in terms of ``mean - z``; megq rounds the stored values' mean, so the two agree when ``z`` is 0
    (int8 activations, also when written as uint8). An odd window without padding has no ties: no nudge. Border
    windows that exclude padding have fewer taps (even counts too)."""
    if count % 2 and not padded:
        return 0.0
    return min(2.0 ** -13, 1.0 / (1020.0 * count))


def _reshape(b: _Builder, x: Any, shape: Sequence[int], hint: str) -> str:
    shape = list(shape)
    if b.batch is not None and shape and shape[0] == b.batch:
        shape[0] = 0  # ONNX Reshape: 0 copies the input's dimension, so the batch stays free
    return b.node("Reshape", [b.name_of(x, hint), b.const(f"{hint}_shape", np.asarray(shape, np.int64))], hint)[0]


_TRACED_FUNCTIONAL = ("relu", "relu6", "sigmoid", "hswish", "flatten", "reshape", "max_pool2d", "avg_pool2d",
                      "adaptive_avg_pool2d", "concat", "add", "sub", "mul", "div", "maximum", "minimum")


@contextlib.contextmanager
def _tracing(b: _Builder, paths: Dict[int, str]) -> Iterator[None]:
    from .. import functional as F

    original_call = Module.__call__

    def traced_call(self: Module, *args: Any, **kwargs: Any) -> Any:
        if b.depth or not _probe_leaf(self):
            return original_call(self, *args, **kwargs)
        hint = paths.get(id(self), type(self).__name__)
        b.depth += 1
        try:
            out = original_call(self, *args, **kwargs)
        finally:
            b.depth -= 1
        name = _record_module(b, self, hint, args + tuple(kwargs.values()), out)
        if name is None:
            raise ValueError(f"export_onnx: module '{hint}' ({type(self).__name__}) has no ONNX translation")
        b.bind(out, name)
        return out

    def make(fn_name: str, fn: Callable) -> Callable:
        def traced(*args: Any, **kwargs: Any) -> Any:
            if b.depth:
                return fn(*args, **kwargs)
            b.depth += 1
            try:
                out = fn(*args, **kwargs)
            finally:
                b.depth -= 1
            b.bind(out, _functional(b, fn_name, args, kwargs, out, f"F.{fn_name}"))
            return out
        return traced

    saved = {n: getattr(F, n) for n in _TRACED_FUNCTIONAL}
    # Module.__call__ is the base; QAT/quantized subclasses call it through super(), so patching it sees every
    # module call. The previous value is restored whatever happens.
    Module.__call__ = traced_call  # type: ignore[method-assign]
    for n, fn in saved.items():
        setattr(F, n, make(n, fn))
    try:
        with layer_by_layer():  # a Q model's execution plan would run its forward without calling its layers
            yield
    finally:
        Module.__call__ = original_call  # type: ignore[method-assign]
        for n, fn in saved.items():
            setattr(F, n, fn)


def _probe_leaf(m: Module) -> bool:
    """Leaf modules are recorded as ONNX ops; containers (Sequential, blocks, the model) just run."""
    from .. import module as M
    from ..module import quantized as MQ

    if isinstance(m, MQ.QuantizedModule):
        return True
    leaves = (M.Conv2d, M.ConvBn2d, M.ConvBnRelu2d, M.Linear, M.LinearBn1d, M.LinearBnRelu1d, M.BatchNorm1d,
              M.BatchNorm2d, M.ReLU, M.ReLU6, M.Sigmoid, M.HSwish, M.MaxPool2d, M.AdaptiveAvgPool2d,
              M.Flatten, M.Identity, M.Dropout, M.Elemwise, M.Concat, M.QuantStub, M.DequantStub)
    return isinstance(m, leaves) or _is_fused(m, "ConvBn") or _is_fused(m, "LinearBn")


def _value_info(onnx: Any, b: _Builder, name: str, arr: Any, batch_free: bool) -> Any:
    if isinstance(arr, QuantizedTensor):
        elem = onnx.TensorProto.INT8 if b.act_dtype(arr.dtype) == "int8" else onnx.TensorProto.UINT8
    else:
        elem = onnx.TensorProto.FLOAT
    shape: List[Any] = list(arr.shape)
    if batch_free and shape:
        shape[0] = "N"
    return onnx.helper.make_tensor_value_info(name, elem, shape)


def export_onnx(model: Module, path: "str | os.PathLike[str]", example_input: Any, opset: int = OPSET,
                int8_as_uint8: bool = True) -> "Any":
    """Write ``model`` (float, QFloat or Q megq model) to ``path`` as ONNX and return the ``onnx.ModelProto``.

    ``example_input``: a numpy array or megq Tensor in the model's NCHW float layout; its shape fixes every
    dimension but the batch (the graph's first input/output dimension is the symbolic ``N``). The model is traced
    in eval mode (its mode is restored afterwards).

    ``int8_as_uint8`` (Q models): int8 activations are written as uint8 ``v + 128`` with zero point ``z + 128``, the
    same real values rounded the same way. ONNX Runtime's x86 kernels are u8s8 (uint8 activations, int8 weights):
    with int8 activations it leaves the QDQ groups unfused on x86 unless the session sets
    ``session.qdqisint8allowed``. ``False`` keeps megq's int8 storage (ARM targets run s8s8).

    The file is checked with ``onnx.checker`` (full check, with
    shape inference) and written atomically: a failure leaves no file behind.
    """
    try:
        import onnx
    except ImportError as e:
        raise ImportError("export_onnx needs the 'onnx' package (pip install megq[interop])") from e
    from ..autodiff import no_grad
    from ..module import qat as MQAT
    from ..quantization import quantize

    if not isinstance(model, Module):
        raise TypeError(f"model: expected a megq Module, got {type(model).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__}")
    if isinstance(example_input, Tensor):
        example = np.asarray(example_input.numpy(), np.float32)
    elif isinstance(example_input, np.ndarray):
        if example_input.dtype.kind != "f":
            raise TypeError(f"example_input: expected a float array, got dtype {example_input.dtype}")
        example = np.asarray(example_input, np.float32)
    else:
        raise TypeError(f"example_input: expected a numpy array or megq Tensor, got {type(example_input).__name__}")
    if example.ndim < 1 or example.size == 0:
        raise ValueError(f"example_input: expected a non-empty batch, got shape {example.shape}")
    if not isinstance(opset, int) or opset < 14:
        raise ValueError(f"opset: expected an int >= 14 (HardSwish, per-channel QDQ), got {opset!r}")

    training = [(m, m.training) for m in model.modules()]
    if any(isinstance(m, MQAT.QATModule) for m in model.modules()):
        # A QFloat model exports as the Q model it quantizes to (its eval forward computes the same integers).
        model = quantize(copy.deepcopy(model), inplace=True)
    model.eval()
    b = _Builder(onnx)
    b.batch = example.shape[0]
    if not isinstance(int8_as_uint8, bool):
        raise TypeError(f"int8_as_uint8: expected a bool, got {type(int8_as_uint8).__name__}")
    b.int8_as_uint8 = int8_as_uint8
    x = Tensor(example)
    b.bind(x, "input")
    paths = {id(m): (name or type(m).__name__) for name, m in model.named_modules()}
    try:
        with _tracing(b, paths), no_grad():
            out = model(x)
    finally:
        for m, mode in training:
            m.training = mode
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    graph_outputs = []
    for i, o in enumerate(outs):
        src = b.name_of(o, "the model's output")
        name = "output" if len(outs) == 1 else f"output_{i}"
        b.nodes.append(onnx.helper.make_node("Identity", [src], [name], name=f"{name}/Identity"))
        graph_outputs.append(_value_info(onnx, b, name, o, True))
    graph = onnx.helper.make_graph(b.nodes, type(model).__name__, [_value_info(onnx, b, "input", x, True)],
                                   graph_outputs, b.inits)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   producer_name="megq")
    proto.ir_version = min(proto.ir_version, 9)  # readable by ONNX Runtime releases of the last two years
    onnx.checker.check_model(proto, full_check=True)
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return proto
