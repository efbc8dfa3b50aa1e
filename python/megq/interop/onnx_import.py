"""``from_onnx``: an ONNX float CNN as a megq float Module tree, ready for ``quantize_qat``.

Steps:
1. **Constant folding.** Every node whose inputs are all constants (initializers, ``Constant`` outputs, or
   ``Shape``/``Size`` of a tensor whose shape is static) is evaluated once with ONNX's reference evaluator. This
   removes the shape arithmetic exporters leave behind (``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``,
   ``Constant``/``Cast``/``Slice`` chains, ``Pad`` amounts computed from constants).
2. **Pattern matching.** A zero ``Pad`` feeding only a ``Conv`` becomes the conv's padding (zero padding is what a
   quantized conv pads with: the input zero point). ``Conv -> BatchNormalization -> Relu|Clip(0, 6)`` chains (each
   step the sole consumer of the previous one) become ``ConvBn2d`` / ``ConvBnRelu2d`` / ``ConvBnRelu62d`` (or
   ``Conv2d`` / ``ConvRelu2d`` / ``ConvRelu62d`` when the exporter already folded the BN); ``Gemm`` and ``MatMul``
   (+ constant ``Add``) with a constant weight become ``Linear`` (+ ReLU); ``Add``/``Mul`` of two computed tensors
   become ``Elemwise("ADD")``/``Elemwise("MUL")`` (``Add -> Relu`` becomes ``Elemwise("FUSE_ADD_RELU")``) so the
   sum gets its own observer; pooling, ``Flatten``, ``Reshape`` and ``Concat`` become their megq modules.
3. A ``QuantStub`` follows each graph input and a ``DequantStub`` precedes each output, so ``quantize_qat`` and
   ``quantize`` work on the result as on a model written with megq's modules.

Any other op on a computed tensor raises ``ValueError`` naming the node and the op.
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import functional as F
from .. import module as M

__all__ = ["OnnxModel", "from_onnx", "SUPPORTED_OPS"]

SUPPORTED_OPS = ("Conv", "BatchNormalization", "Relu", "Clip", "Add", "Mul", "Gemm", "MatMul", "MaxPool",
                 "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Concat", "Identity", "Dropout", "Pad")


class Reshape(M.Module):
    """``F.reshape(x, shape)`` where a 0 in ``shape`` copies the input's dimension (ONNX's rule), so a leading 0
    keeps the batch free."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = [int(s) for s in shape]

    def forward(self, x: Any) -> Any:
        dims = [x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)]
        return F.reshape(x, dims)

    def _extra_repr(self) -> str:
        return repr(self.shape)


class OnnxModel(M.Module):
    """A megq model made by :func:`from_onnx`: its layers are attributes (named after the ONNX nodes) and
    ``program`` lists, in graph order, ``(layer attribute, input value names, output value name, kind)`` where kind
    is ``"call"`` (``layer(*inputs)``) or ``"concat:<axis>"`` (``layer(inputs, axis)``)."""

    def __init__(self, input_names: Sequence[str], output_names: Sequence[str]) -> None:
        super().__init__()
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.program: List[Tuple[str, List[str], str, str]] = []
        for i in range(len(self.input_names)):
            setattr(self, "quant" if i == 0 else f"quant_{i}", M.QuantStub())
        self.dequant = M.DequantStub()

    def forward(self, *inputs: Any) -> Any:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"OnnxModel: expected {len(self.input_names)} input(s) {self.input_names}, got "
                             f"{len(inputs)}")
        env: Dict[str, Any] = {}
        for i, (name, x) in enumerate(zip(self.input_names, inputs)):
            env[name] = getattr(self, "quant" if i == 0 else f"quant_{i}")(x)
        for attr, ins, out, kind in self.program:
            layer = getattr(self, attr)
            if kind.startswith("concat:"):  # "concat:<axis>"
                env[out] = layer([env[n] for n in ins], int(kind[len("concat:"):]))
            else:
                env[out] = layer(*[env[n] for n in ins])
        outs = [self.dequant(env[n]) for n in self.output_names]
        return outs[0] if len(outs) == 1 else tuple(outs)


# ---------------------------------------------------------------------------------------------------------------
def _attrs(node: Any) -> Dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _where(node: Any) -> str:
    return f"node {node.name or '<unnamed>'!r} ({node.op_type})"


def _load(path: Any) -> Any:
    import onnx

    if isinstance(path, onnx.ModelProto):
        return path
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected an ONNX file path or onnx.ModelProto, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"from_onnx: no such file {path!r}")
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as e:  # truncated protobuf, bad graph...
        raise ValueError(f"from_onnx: {path!r} is not a valid ONNX model ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return model


def _static_shapes(model: Any) -> Dict[str, Tuple[int, ...]]:
    """Static shapes from ONNX shape inference, with symbolic input dimensions (the batch) set to 1."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    init_names = {t.name for t in m.graph.initializer}
    for inp in m.graph.input:
        if inp.name in init_names:
            continue
        for d in inp.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = 1
    try:
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception:  # noqa: BLE001 - folding then just sees fewer static shapes
        return {}
    shapes: Dict[str, Tuple[int, ...]] = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[vi.name] = tuple(int(d.dim_value) for d in t.shape.dim)
    return shapes


def _fold_pass(model: Any, consts: Dict[str, np.ndarray], shapes: Dict[str, Tuple[int, ...]]) -> List[Any]:
    """One pass over the nodes: evaluates those computable from ``consts`` (and static ``shapes``), adding their
    outputs to ``consts``; returns the others."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    opset = {o.domain: o.version for o in model.opset_import}
    remaining = []
    for node in model.graph.node:
        ins = [n for n in node.input if n]
        if node.op_type == "Constant":
            consts[node.output[0]] = ReferenceEvaluator(node).run(None, {})[0]
            continue
        if node.op_type in ("Shape", "Size") and ins and ins[0] not in consts and ins[0] in shapes:
            shape = np.asarray(shapes[ins[0]], np.int64)
            if node.op_type == "Size":
                consts[node.output[0]] = np.asarray(np.prod(shape), np.int64)
                continue
            a = _attrs(node)
            consts[node.output[0]] = shape[a.get("start", 0):a.get("end", len(shape))]
            continue
        if ins and all(n in consts for n in ins) and node.domain in ("", "ai.onnx"):
            sub = onnx.helper.make_model(
                onnx.helper.make_graph([node], "fold", [], [onnx.helper.make_empty_tensor_value_info(o)
                                                           for o in node.output]),
                opset_imports=[onnx.helper.make_opsetid("", opset.get("", 17))])
            try:
                outs = ReferenceEvaluator(sub).run(None, {n: consts[n] for n in ins if n})
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"from_onnx: could not fold constant {_where(node)}: {e}") from None
            for name, val in zip(node.output, outs):
                consts[name] = np.asarray(val)
            continue
        remaining.append(node)
    return remaining


def _fold_constants(model: Any) -> Tuple[List[Any], Dict[str, np.ndarray], Dict[str, Tuple[int, ...]]]:
    """(remaining nodes, constants, static shapes). Folding and shape inference alternate until nothing changes:
    a folded constant (e.g. a Pad's amounts) lets shape inference see further, which lets more Shape ops fold."""
    import onnx
    from onnx import numpy_helper

    consts: Dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    current = model
    for _ in range(8):
        shapes = _static_shapes(current)
        before = len(current.graph.node)
        remaining = _fold_pass(current, consts, shapes)
        used = {n for node in remaining for n in node.input} | {o.name for o in current.graph.output}
        nxt = onnx.ModelProto()
        nxt.CopyFrom(current)
        del nxt.graph.node[:]
        nxt.graph.node.extend(remaining)
        del nxt.graph.initializer[:]
        nxt.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()
                                     if k in used)
        current = nxt
        if len(remaining) == before:
            break
    return list(current.graph.node), consts, _static_shapes(current)


def _sym_pads(pads: Sequence[int], node: Any) -> Tuple[int, int]:
    pads = [int(p) for p in pads] if pads else [0, 0, 0, 0]
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        raise ValueError(f"from_onnx: {_where(node)}: asymmetric or non-2-D padding {pads} is not supported")
    return pads[0], pads[1]


def _auto_pad(a: Dict[str, Any], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
              in_hw: Optional[Tuple[int, int]], node: Any) -> List[int]:
    mode = a.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode in ("NOTSET", ""):
        return list(a.get("pads", [0, 0, 0, 0]))
    if mode == "VALID":
        return [0, 0, 0, 0]
    if in_hw is None:
        raise ValueError(f"from_onnx: {_where(node)}: auto_pad={mode} needs a static input shape")
    pads = [0, 0, 0, 0]
    for i in range(2):
        out = -(-in_hw[i] // strides[i])
        total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - in_hw[i])
        small, big = total // 2, total - total // 2
        pads[i], pads[i + 2] = (small, big) if mode == "SAME_UPPER" else (big, small)
    return pads


def _attr_name(node: Any, taken: set, index: int) -> str:
    base = re.sub(r"[^0-9A-Za-z_]", "_", (node.name or "").strip("/")).strip("_")
    base = re.sub(r"_+", "_", base) or f"{node.op_type.lower()}"
    if base[0].isdigit():
        base = f"n{base}"
    name, k = base, 1
    while name in taken or name in ("quant", "dequant", "program", "input_names", "output_names", "training",
                                    "name") or name.startswith("quant_"):
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _set(t: Any, value: np.ndarray) -> None:
    value = np.asarray(value, np.float32)
    if tuple(t.shape) != value.shape:
        raise ValueError(f"from_onnx: parameter shape {value.shape} does not match {tuple(t.shape)}")
    t.set_value(value.copy())


def from_onnx(path: Any) -> OnnxModel:
    """An ONNX float CNN (file path or ``onnx.ModelProto``) as a megq :class:`OnnxModel` in eval mode (see the
    module docstring for what is supported and how it is mapped). Raises ``ValueError`` naming the node and op of
    the first unsupported node, or for an unreadable file."""
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        raise ImportError("from_onnx needs the 'onnx' package (pip install megq[interop])") from e
    model = _load(path)
    nodes, consts, shapes = _fold_constants(model)
    init_names = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in init_names]
    outputs = [o.name for o in model.graph.output]
    for node in nodes:
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"from_onnx: {_where(node)} of domain {node.domain!r} is not supported")
    consumers: Dict[str, List[Any]] = {}
    for node in nodes:
        for n in node.input:
            consumers.setdefault(n, []).append(node)
    for o in outputs:
        consumers.setdefault(o, []).append(None)

    def sole(name: str, op: Optional[str] = None) -> Optional[Any]:
        users = consumers.get(name, [])
        if len(users) == 1 and users[0] is not None and (op is None or users[0].op_type == op):
            return users[0]
        return None

    net = OnnxModel(inputs, outputs)
    taken: set = set()
    alias: Dict[str, str] = {}  # value name -> the value it equals (Identity, Dropout, folded nodes)
    done: set = set()
    extra_pads: Dict[int, List[int]] = {}  # Conv node id -> its pads with a folded zero Pad

    def src(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    def const(name: str, node: Any, what: str) -> np.ndarray:
        if name not in consts:
            raise ValueError(f"from_onnx: {_where(node)}: {what} must be a constant (an initializer or computable "
                             f"from constants)")
        return consts[name]

    def emit(node: Any, module: M.Module, ins: List[str], out: str, kind: str = "call") -> None:
        attr = _attr_name(node, taken, len(net.program))
        setattr(net, attr, module)
        net.program.append((attr, [src(n) for n in ins], out, kind))

    def activation_after(name: str) -> Tuple[Optional[str], str, List[Any]]:
        """("relu" | "relu6" | None, output name, nodes absorbed) for a Relu/Clip that solely consumes ``name``."""
        nxt = sole(name)
        if nxt is None:
            return None, name, []
        act = _activation_kind(nxt)
        if act is None:
            return None, name, []
        return act, nxt.output[0], [nxt]

    def _activation_kind(node: Any) -> Optional[str]:
        if node.op_type == "Relu":
            return "relu"
        if node.op_type != "Clip":
            return None
        a = _attrs(node)
        lo = a.get("min") if len(node.input) < 2 or not node.input[1] else consts.get(node.input[1])
        hi = a.get("max") if len(node.input) < 3 or not node.input[2] else consts.get(node.input[2])
        if (len(node.input) > 1 and node.input[1] and lo is None) or (len(node.input) > 2 and node.input[2]
                                                                      and hi is None):
            return None  # bounds computed at run time
        lo = None if lo is None else float(np.asarray(lo))
        hi = None if hi is None else float(np.asarray(hi))
        if lo == 0.0 and hi == 6.0:
            return "relu6"
        if lo == 0.0 and (hi is None or np.isinf(hi)):
            return "relu"
        return None

    for node in nodes:
        if id(node) in done:
            continue
        op = node.op_type
        x = node.input[0] if node.input else ""
        if op in ("Identity", "Dropout"):
            alias[node.output[0]] = x
            continue
        if op == "Pad":
            conv = sole(node.output[0], "Conv")
            a = _attrs(node)
            mode = a.get("mode", b"constant")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            pads = a.get("pads") if len(node.input) < 2 else const(node.input[1], node, "pads")
            value = 0.0 if len(node.input) < 3 or not node.input[2] else float(const(node.input[2], node, "value"))
            pads = [int(p) for p in np.asarray(pads).reshape(-1)]
            if conv is None or mode != "constant" or value != 0.0 or len(pads) != 8 or any(pads[i] for i in
                                                                                       (0, 1, 4, 5)):
                raise ValueError(f"from_onnx: {_where(node)}: only a zero constant Pad of H and W feeding a single "
                                 f"Conv is supported (it becomes the conv's padding)")
            conv_pads = _auto_pad(_attrs(conv), [1, 1], [1, 1], [1, 1], None, conv)
            total = [pads[2] + conv_pads[0], pads[3] + conv_pads[1], pads[6] + conv_pads[2], pads[7] + conv_pads[3]]
            if id(conv) in extra_pads:
                raise ValueError(f"from_onnx: {_where(node)}: two Pads before one Conv")
            extra_pads[id(conv)] = total
            alias[node.output[0]] = x
            continue
        if op == "Conv":
            module, out, absorbed = _conv(node, shapes, extra_pads.pop(id(node), None), sole, activation_after,
                                          const)
            emit(node, module, [x], out)
            done.update(id(n) for n in absorbed)
            continue
        if op in ("Gemm", "MatMul"):
            module, out, absorbed = _linear(node, consts, sole, activation_after, const)
            emit(node, module, [x], out)
            done.update(id(n) for n in absorbed)
            continue
        if op == "BatchNormalization":
            bn = _batchnorm(node, const, 4 if len(shapes.get(x, (0,) * 4)) == 4 else 2)
            emit(node, bn, [x], node.output[0])
            continue
        if op in ("Relu", "Clip"):
            act = _activation_kind(node)
            if act is None:
                raise ValueError(f"from_onnx: {_where(node)}: only Clip(0, 6) (ReLU6) and Clip(0, inf) are "
                                 f"supported")
            emit(node, M.ReLU6() if act == "relu6" else M.ReLU(), [x], node.output[0])
            continue
        if op in ("Add", "Mul"):
            a, b = node.input[0], node.input[1]
            if a in consts or b in consts:
                raise ValueError(f"from_onnx: {_where(node)}: {op} with a constant operand is only supported as "
                                 f"the bias of a MatMul")
            out, method = node.output[0], "ADD" if op == "Add" else "MUL"
            if op == "Add":
                relu = sole(out, "Relu")
                if relu is not None:
                    out, method = relu.output[0], "FUSE_ADD_RELU"
                    done.add(id(relu))
            emit(node, M.Elemwise(method), [a, b], out)
            continue
        if op in ("MaxPool", "AveragePool"):
            a = _attrs(node)
            k = list(a["kernel_shape"])
            s = list(a.get("strides", [1, 1]))
            if len(k) != 2 or a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1])):
                raise ValueError(f"from_onnx: {_where(node)}: only 2-D pooling without ceil_mode or dilation is "
                                 f"supported")
            hw = shapes.get(src(x), shapes.get(x))
            pads = _sym_pads(_auto_pad(a, k, s, [1, 1], hw[2:] if hw else None, node), node)
            if op == "MaxPool":
                if len(node.output) > 1 and node.output[1]:
                    raise ValueError(f"from_onnx: {_where(node)}: MaxPool indices output is not supported")
                mod: M.Module = M.MaxPool2d(k, s, pads)
            else:
                mode = "average" if a.get("count_include_pad", 0) else "average_count_exclude_padding"
                mod = M.AvgPool2d(k, s, pads, mode=mode)
            emit(node, mod, [x], node.output[0])
            continue
        if op == "GlobalAveragePool":
            emit(node, M.AdaptiveAvgPool2d(1), [x], node.output[0])
            continue
        if op == "Flatten":
            axis = _attrs(node).get("axis", 1)
            shape = shapes.get(x)
            if axis == 1:
                emit(node, M.Flatten(1), [x], node.output[0])
            elif shape is not None:
                emit(node, Reshape([-1, int(np.prod(shape[axis:]))]), [x], node.output[0])
            else:
                raise ValueError(f"from_onnx: {_where(node)}: Flatten(axis={axis}) needs a static input shape")
            continue
        if op == "Reshape":
            target = [int(v) for v in const(node.input[1], node, "the target shape").reshape(-1)]
            shape = shapes.get(x)
            if shape is not None and len(target) == 2 and target[0] in (0, shape[0], -1) and target[1] in (
                    -1, int(np.prod(shape[1:]))) and not (target[0] == -1 and target[1] == -1):
                emit(node, M.Flatten(1), [x], node.output[0])
            else:
                if shape is not None and target and target[0] == shape[0]:
                    target[0] = 0  # keep the batch free (shapes were inferred with batch 1)
                emit(node, Reshape(target), [x], node.output[0])
            continue
        if op == "Concat":
            ins = list(node.input)
            if any(n in consts for n in ins):
                raise ValueError(f"from_onnx: {_where(node)}: Concat with a constant operand is not supported")
            emit(node, M.Concat(), ins, node.output[0], kind=f"concat:{int(_attrs(node)['axis'])}")
            continue
        raise ValueError(f"from_onnx: {_where(node)} is not supported (supported ops: {', '.join(SUPPORTED_OPS)}, "
                         f"and any op on constants)")
    net.output_names = [src(o) for o in outputs]
    if any(o in consts for o in net.output_names):
        raise ValueError("from_onnx: an output of the graph is a constant")
    return net.eval()


def _batchnorm(node: Any, const: Any, rank: int) -> M.Module:
    a = _attrs(node)
    scale, bias, mean, var = (np.asarray(const(n, node, "a BatchNormalization parameter"), np.float32)
                              for n in node.input[1:5])
    bn = (M.BatchNorm2d if rank == 4 else M.BatchNorm1d)(scale.shape[0], eps=float(a.get("epsilon", 1e-5)))
    for t, v in ((bn.weight, scale), (bn.bias, bias), (bn.running_mean, mean), (bn.running_var, var)):
        _set(t, v)
    return bn


def _conv(node: Any, shapes: Dict[str, Tuple[int, ...]], pads: Optional[List[int]], sole: Any,
          activation_after: Any, const: Any) -> Tuple[M.Module, str, List[Any]]:
    a = _attrs(node)
    w = np.asarray(const(node.input[1], node, "the weight"), np.float32)
    if w.ndim != 4:
        raise ValueError(f"from_onnx: {_where(node)}: only 2-D convolutions are supported, weight shape {w.shape}")
    b = None if len(node.input) < 3 or not node.input[2] else np.asarray(const(node.input[2], node, "the bias"),
                                                                         np.float32)
    k = list(w.shape[2:])
    s = list(a.get("strides", [1, 1]))
    d = list(a.get("dilations", [1, 1]))
    groups = int(a.get("group", 1))
    hw = shapes.get(node.input[0])
    pads = pads or _auto_pad(a, k, s, d, hw[2:] if hw else None, node)
    ph, pw = _sym_pads(pads, node)
    out, absorbed = node.output[0], []
    bn_node = sole(out, "BatchNormalization")
    act, out_act, act_nodes = activation_after(bn_node.output[0] if bn_node is not None else out)
    cin, cout = w.shape[1] * groups, w.shape[0]
    geom = dict(stride=s, padding=(ph, pw), dilation=d, groups=groups)
    if bn_node is not None:
        cls = getattr(M, {None: "ConvBn2d", "relu": "ConvBnRelu2d", "relu6": "ConvBnRelu62d"}[act])
        bn_a = _attrs(bn_node)
        mod = cls(cin, cout, k, bias=b is not None, eps=float(bn_a.get("epsilon", 1e-5)), **geom)
        conv = mod.conv
        bn = _batchnorm(bn_node, const, 4)
        for t, v in ((mod.bn.weight, bn.weight.numpy()), (mod.bn.bias, bn.bias.numpy()),
                     (mod.bn.running_mean, bn.running_mean.numpy()), (mod.bn.running_var, bn.running_var.numpy())):
            _set(t, v)
        absorbed.append(bn_node)
    else:
        cls = getattr(M, {None: "Conv2d", "relu": "ConvRelu2d", "relu6": "ConvRelu62d"}[act])
        mod = cls(cin, cout, k, bias=b is not None, **geom)
        conv = mod
    _set(conv.weight, w)
    if b is not None:
        _set(conv.bias, b)
    absorbed += act_nodes
    return mod, out_act if act else (bn_node.output[0] if bn_node is not None else out), absorbed


def _linear(node: Any, consts: Dict[str, np.ndarray], sole: Any, activation_after: Any,
            const: Any) -> Tuple[M.Module, str, List[Any]]:
    a = _attrs(node)
    absorbed: List[Any] = []
    if node.op_type == "Gemm":
        if a.get("transA", 0):
            raise ValueError(f"from_onnx: {_where(node)}: Gemm with transA=1 is not supported")
        w = np.asarray(const(node.input[1], node, "B (the weight)"), np.float32) * np.float32(a.get("alpha", 1.0))
        w = w if a.get("transB", 0) else w.T
        b = None
        if len(node.input) > 2 and node.input[2]:
            b = np.asarray(const(node.input[2], node, "C (the bias)"), np.float32) * np.float32(a.get("beta", 1.0))
            b = np.broadcast_to(b.reshape(-1), (w.shape[0],)).copy()
        out = node.output[0]
    else:
        w = np.asarray(const(node.input[1], node, "the weight"), np.float32)
        if w.ndim != 2:
            raise ValueError(f"from_onnx: {_where(node)}: only a 2-D constant MatMul weight is supported")
        w = w.T
        out, b = node.output[0], None
        add = sole(out, "Add")
        if add is not None:
            other = add.input[1] if add.input[0] == out else add.input[0]
            if other in consts and np.asarray(consts[other]).size == w.shape[0]:
                b = np.asarray(consts[other], np.float32).reshape(-1)
                out = add.output[0]
                absorbed.append(add)
    act, out_act, act_nodes = activation_after(out)
    cls = getattr(M, {None: "Linear", "relu": "LinearRelu", "relu6": "LinearRelu6"}[act])
    mod = cls(w.shape[1], w.shape[0], bias=b is not None)
    _set(mod.weight, w)
    if b is not None:
        _set(mod.bias, b)
    return mod, out_act if act else out, absorbed + act_nodes
