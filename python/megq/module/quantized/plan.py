"""Execution plans for Q models: one C++ call per forward instead of one Python call per layer.

A Q model runs layer by layer: each layer is a Python call that looks up its prepared kernel, allocates its output
and wraps it in a :class:`~megq.qtensor.QuantizedTensor`. For small layers (MobileNetV2 has about 60) that Python
work is a large share of the forward. A :class:`PlanRunner` on the model's root (``quantize()`` attaches one; see
``megq.quantization.compile``) replaces it, behind the same ``qmodel(x)`` call:

* **Capture.** At the first eval call for an input shape, the forward runs layer by layer once with a tracer on
  (:func:`megq.functional.quantized.traced`): every quantized layer (QuantStub, Conv2d, Linear, DequantStub) and
  every int8 op on a QuantizedTensor (Elemwise, Concat, pooling, flatten, ReLU / ReLU6) reports its inputs, output
  and prepared kernel, and becomes a step of a :class:`megq.kernels.Plan` (one arena for all activations,
  allocated once). The plan is then run on the same input and must return the same bits, else it is discarded.
* **Run.** Later calls with that input shape convert the input as QuantStub does and run the plan: one C++ call,
  GIL released, the same kernels with the same packed weights in the same order, so the outputs are equal bit for
  bit to the layer-by-layer path's.
* **Fallback.** Anything the plan cannot express (a float layer or ``FloatIsland`` inside the forward, an op
  without a step, a tensor made outside the traced ops, a user hook, keyword arguments, an input that is not an
  array) leaves that model (or input shape) on the layer-by-layer path: never a different answer. The model's
  direct children holding two or more quantized layers then get runners of their own (and so on down), so the
  quantized parts of such a model (MobileNetV2's ``features`` before a float classifier) still run as plans,
  taking and returning QuantizedTensors. Automatic plans
  are only made for models whose modules all have megq's own ``forward`` code (the zoo's ResNets and MobileNetV2,
  containers, the quantized layers): a trace records one path through ``forward``, so a user-written ``forward``
  that branches on tensor values could take another; ``megq.quantization.compile(model)`` opts such a model in.
* **Invalidation.** Each call checks that no module of the tree was replaced, got or lost a hook or left eval mode
  since the capture (one comparison of :func:`megq.module.module.tree_version` while no module attribute was
  assigned anywhere, else a walk over the tree's links); if one did, the plans are dropped and rebuilt on demand.
  In-place edits of a layer's integer parameters are not seen (nor by the layers' own prepared-kernel caches).

Plans are transient: the runner is saved with the model (so ``megq.load`` gives a model that plans again), its plans
are not (``_transient_attrs``); a deep copy gets a fresh runner.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ...functional import quantized as QF
from ...qtensor import QuantizedTensor
from ...tensor import Tensor
from ..module import Module, tree_version

__all__ = ["PlanRunner", "attach_plan_runner", "layer_by_layer", "plan_status"]

logger = logging.getLogger("megq.plan")

#: Plans kept per model (one per input shape; least recently used dropped first).
MAX_PLANS = 8

_DTYPE_RANGE = {"int8": (-128, 127), "uint8": (0, 255)}

# Per thread: a trace is running (every runner steps aside so the tracer sees each layer).
_local = threading.local()


@contextlib.contextmanager
def layer_by_layer() -> Iterator[None]:
    """In this block (this thread), every Q model runs layer by layer, through each module's ``__call__``.

    For code that observes a forward module by module by other means than hooks (hooks already keep a model off
    its plan), e.g. the ONNX exporter, which patches ``Module.__call__``: a plan would run the whole forward as one
    C++ call and the observer would see no layer."""
    previous = getattr(_local, "tracing", False)
    _local.tracing = True
    try:
        yield
    finally:
        _local.tracing = previous


class _Unsupported(Exception):
    """The traced forward did something a plan cannot express (the message says what)."""


def _pair(v: Any) -> Tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[-1]))


def _input(a: Any) -> Optional[Tuple[np.ndarray, tuple]]:
    """(the array a plan takes for argument ``a``, its part of the plan key), or None if a plan cannot take it.

    A float array or Tensor is converted as QuantStub converts it (float32, C-contiguous, 4-D: a 2-D (N, C) input
    is viewed as (N, C, 1, 1), as megq.kernels.quantize does). A QuantizedTensor (the input of a sub-module's plan)
    passes its data; its quantization is part of the key, since the layers' prepared kernels depend on it."""
    if isinstance(a, QuantizedTensor):
        if a.backend != "kernels" or a.data.ndim not in (2, 4):
            return None
        return np.ascontiguousarray(a.data), ("q", a.data.shape, a.dtype, float(a.scale), a.zero_point, a.qmin,
                                               a.qmax)
    if isinstance(a, Tensor):
        a = a.numpy()
    elif not isinstance(a, np.ndarray):
        return None
    x = np.asarray(a, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, :, None, None]
    elif x.ndim != 4:
        return None
    return np.ascontiguousarray(x), ("f", x.shape)


class _Trace:
    """The tracer of one forward: turns each reported op into plan steps (or records why it cannot)."""

    def __init__(self, args: Sequence[Any], inputs: List[np.ndarray]) -> None:
        from ... import kernels  # here: loads the compiled extension

        self.plan = kernels.Plan()
        self.failure: Optional[str] = None
        self.keep: List[Any] = []  # every object whose id() is a key below stays alive for the trace
        self.quantized: Dict[int, Tuple[int, QuantizedTensor, np.ndarray]] = {}  # id -> (tensor, QT, its data)
        self.float_inputs: Dict[int, int] = {}  # id(argument) -> plan input index
        self.float_outputs: Dict[int, Tuple[int, Tensor, Tuple[int, ...]]] = {}  # id(Tensor) -> (output, ...)
        for a, x in zip(args, inputs):
            self.keep.append(a)
            try:
                if isinstance(a, QuantizedTensor):
                    self.plan.add_quantized_input(self._new_q(a))
                else:
                    self.float_inputs[id(a)] = self.plan.add_input(*x.shape)
            except (_Unsupported, ValueError) as e:  # the forward reports its own error for such an input
                self.failure = f"input: {e}"

    # -- the tracer protocol (megq.functional.quantized.traced) --------------------------------------------------
    def __call__(self, name: str, fn: Any, args: tuple, kwargs: dict) -> Any:
        _local_tracer(None)  # ops inside this one (adaptive pooling's avg_pool2d, concat's requantize) are part of it
        try:
            out = fn(*args, **kwargs)
        finally:
            _local_tracer(self)
        if self.failure is None:
            try:
                getattr(self, "_op_" + name)(out, *args, **kwargs)
            except _Unsupported as e:
                self.failure = f"{name}: {e}"
            except (TypeError, ValueError) as e:  # a step the plan's own checks refuse
                self.failure = f"{name}: {e}"
        return out

    # -- tensors ----------------------------------------------------------------------------------------------------
    def _q(self, x: Any) -> int:
        """The plan tensor of quantized input ``x``; it must be the unchanged output of a traced op."""
        entry = self.quantized.get(id(x))
        if entry is None or entry[1] is not x:
            raise _Unsupported("an input was not produced by a traced quantized op")
        tid, _, data = entry
        if x.data is not data:
            raise _Unsupported("an input's data was replaced after it was produced")
        return tid

    def _new_q(self, out: Any) -> int:
        if not isinstance(out, QuantizedTensor) or out.backend != "kernels":
            raise _Unsupported(f"expected a QuantizedTensor of the kernels backend, got {type(out).__name__}")
        d = out.data
        if d.ndim == 4:
            n, h, w, c = d.shape
        elif d.ndim == 2:
            (n, c), h, w = d.shape, 1, 1
        else:
            raise _Unsupported(f"a {d.ndim}-D quantized tensor has no plan layout")
        return self._bind(out, self.plan.add_tensor(n, h, w, c, out.dtype))

    def _bind(self, out: QuantizedTensor, tid: int) -> int:
        self.keep.append(out)
        self.quantized[id(out)] = (tid, out, out.data)
        return tid

    def _narrow(self, tid: int, qmin: int, qmax: int, dtype: str) -> None:
        """The clamp to a range narrower than the storage dtype's (qint4 ... in 8 bits), as the layer applies it."""
        if (qmin, qmax) != _DTYPE_RANGE[dtype]:
            self.plan.add_clamp(tid, tid, int(qmin), int(qmax))

    # -- quantized layers -------------------------------------------------------------------------------------------
    def _op_quant_stub(self, out: Any, stub: Any, x: Any) -> None:
        index = self.float_inputs.get(id(x))
        if index is None:
            raise _Unsupported("QuantStub's input is not an argument of the planned forward (a float layer before it?)")
        tid = self._new_q(out)
        self.plan.add_quantize(index, tid, float(stub.scale), int(stub.zero_point))
        self._narrow(tid, stub.qmin, stub.qmax, stub.dtype)

    def _op_dequant_stub(self, out: Any, stub: Any, x: Any) -> None:
        tid = self._q(x)
        if x.ndim not in (2, 4):
            raise _Unsupported(f"dequantize of a {x.ndim}-D tensor")
        index = self.plan.add_dequantize(tid, float(x.scale), int(x.zero_point))
        self.keep.append(out)
        self.float_outputs[id(out)] = (index, out, tuple(out.numpy().shape))

    def _op_conv2d(self, out: Any, conv: Any, x: Any) -> None:
        tid = self._q(x)
        kind, packed, bound = getattr(conv.kernel_for(x), "plan_args", (None, None, None))
        if kind not in ("conv2d", "depthwise"):
            raise _Unsupported("the layer's prepared kernel has no plan arguments")
        o = self._new_q(out)
        add = self.plan.add_conv2d if kind == "conv2d" else self.plan.add_depthwise
        add(packed, tid, o, _pair(bound["stride"]), _pair(bound["padding"]), _pair(bound["dilation"]),
            str(bound["out_dtype"]), int(bound["out_zero_point"]), bound["out_min"], bound["out_max"])

    def _op_linear(self, out: Any, linear: Any, x: Any) -> None:
        tid = self._q(x)
        kind, packed, bound = getattr(linear.kernel_for(x), "plan_args", (None, None, None))
        if kind != "gemm":
            raise _Unsupported("the layer's prepared kernel has no plan arguments")
        o = self._new_q(out)
        self.plan.add_gemm(packed, tid, o, str(bound["out_dtype"]), int(bound["out_zero_point"]), bound["out_min"],
                           bound["out_max"])

    # -- weightless int8 ops (megq.functional.quantized) ----------------------------------------------------------
    def _op_elemwise(self, out: Any, method: str, a: Any, b: Any, out_scale: Any, out_zero_point: int, qmin: int,
                     qmax: int, out_dtype: str, owner: str) -> None:
        ta, tb = self._q(a), self._q(b)
        o = self._new_q(out)
        self.plan.add_elementwise(method, ta, float(a.scale), a.zero_point, tb, float(b.scale), b.zero_point, o,
                                  float(np.float32(out_scale)), int(out_zero_point))
        self._narrow(o, qmin, qmax, out_dtype)

    def _op_concat(self, out: Any, inputs: Sequence[Any], axis: int, out_scale: Any, out_zero_point: int, qmin: int,
                   qmax: int, out_dtype: str, owner: str) -> None:
        tids = [self._q(x) for x in inputs]
        ndim = inputs[0].ndim
        if (axis + ndim if axis < 0 else axis) != 1 or ndim not in (2, 4):
            raise _Unsupported("concat along an axis other than the channels")
        o = self._new_q(out)
        self.plan.add_concat(tids, [float(x.scale) for x in inputs], [x.zero_point for x in inputs], o,
                             float(np.float32(out_scale)), int(out_zero_point))
        self._narrow(o, qmin, qmax, out_dtype)

    def _op_max_pool2d(self, out: Any, x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        k = _pair(kernel_size)
        self.plan.add_pool(self._q(x), self._new_q(out), k, k if stride is None else _pair(stride), _pair(padding),
                           "max", 0)

    def _op_avg_pool2d(self, out: Any, x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
                       mode: str = "average_count_exclude_padding") -> None:
        k = _pair(kernel_size)
        self.plan.add_pool(self._q(x), self._new_q(out), k, k if stride is None else _pair(stride), _pair(padding),
                           mode, x.zero_point)

    def _op_adaptive_avg_pool2d(self, out: Any, x: Any, oshp: Any) -> None:
        tid = self._q(x)
        oh, ow = _pair(oshp)
        if (oh, ow) == (1, 1):
            self.plan.add_global_avg_pool(tid, self._new_q(out))
        else:  # uniform windows (the op refused sizes that do not divide)
            _, _, h, w = x.shape
            k = (h // oh, w // ow)
            self.plan.add_pool(tid, self._new_q(out), k, k, (0, 0), "average_count_exclude_padding", x.zero_point)

    def _op_flatten(self, out: Any, x: Any, start_axis: int = 0, end_axis: int = -1) -> None:
        tid = self._q(x)
        end = end_axis % x.ndim
        if x.ndim == 4 and start_axis == 1 and end == 3:
            _, _, h, w = x.shape
            if h * w == 1:  # (N, 1, 1, C) -> (N, C): the same bytes
                self._bind(out, tid)
            else:
                self.plan.add_flatten(tid, self._new_q(out))
        elif x.ndim == 2 and start_axis in (1, -1) and end == 1:
            self._bind(out, tid)
        else:
            raise _Unsupported(f"flatten({start_axis}, {end_axis}) of a {x.ndim}-D tensor")

    def _op_reshape(self, out: Any, x: Any, shape: Any) -> None:
        raise _Unsupported("reshape")

    def _op_relu(self, out: Any, x: Any) -> None:
        self.plan.add_clamp(self._q(x), self._new_q(out), max(x.zero_point, x.qmin), _DTYPE_RANGE[x.dtype][1])

    def _op_relu6(self, out: Any, x: Any) -> None:
        lo, hi = QF.activation_bounds(x.scale, x.zero_point, x.qmin, x.qmax, "relu6")
        self.plan.add_clamp(self._q(x), self._new_q(out), lo, hi)

    # -- outputs ----------------------------------------------------------------------------------------------------
    def outputs(self, result: Any) -> Any:
        """The structure of the forward's result as plan outputs: ``("f", index, shape)`` for a DequantStub's
        Tensor, ``("q", index, qparams, shape)`` for a QuantizedTensor, tuples / lists of those."""
        if isinstance(result, (tuple, list)):
            return (type(result), [self.outputs(r) for r in result])
        entry = self.float_outputs.get(id(result))
        if entry is not None and entry[1] is result:
            return ("f", entry[0], entry[2])
        if isinstance(result, QuantizedTensor):
            tid = self._q(result)
            qp = (result.scale, result.zero_point, result.qmin, result.qmax)
            return ("q", self.plan.add_quantized_output(tid), qp, result.data.shape)
        raise _Unsupported(f"the forward returns a {type(result).__name__} the plan does not produce")


def _local_tracer(tracer: Optional[_Trace]) -> None:
    QF._tracing.tracer = tracer


def _rebuild(spec: Any, outs: List[np.ndarray]) -> Any:
    """The forward's result from the plan's output arrays (as the layers build it)."""
    if spec[0] == "f":
        return Tensor(outs[spec[1]].reshape(spec[2]))
    if spec[0] == "q":
        s, z, qmin, qmax = spec[2]
        return QuantizedTensor(outs[spec[1]].reshape(spec[3]), s, z, qmin, qmax, "kernels")
    kind, items = spec
    return kind(_rebuild(s, outs) for s in items)


def _same(a: Any, b: Any) -> bool:
    """Bit-for-bit equality of two forward results."""
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, QuantizedTensor):
        return (isinstance(b, QuantizedTensor) and a.data.dtype == b.data.dtype and a.scale == b.scale
                and a.zero_point == b.zero_point and (a.qmin, a.qmax) == (b.qmin, b.qmax)
                and np.array_equal(a.data, b.data))
    if isinstance(a, Tensor):
        x, y = a.numpy(), b.numpy() if isinstance(b, Tensor) else None
        return y is not None and x.dtype == y.dtype and x.shape == y.shape and np.array_equal(
            x.view(np.uint32), y.view(np.uint32))  # bits: NaN-safe, -0.0 != 0.0
    return False


# Hooks megq itself installs on a Q model's float pass-through modules; they never change a QuantizedTensor.
def _transparent_hook(hook: Any) -> bool:
    return getattr(hook, "plan_transparent", False) is True


def _megq_forward(cls: type) -> bool:
    return str(getattr(getattr(cls, "forward", None), "__module__", "")).startswith("megq.")


class _Plan:
    __slots__ = ("plan", "spec")

    def __init__(self, plan: Any, spec: Any) -> None:
        self.plan, self.spec = plan, spec


class _State:
    """A runner's transient state: plans per input shape, the module-tree snapshot they were traced on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.plans: "OrderedDict[tuple, Optional[_Plan]]" = OrderedDict()
        self.links: List[Tuple[Any, Any, Any]] = []  # (container, key, child): container[key] is child
        self.list_links: List[Tuple[Any, Any, Any]] = []  # the same for items of list attributes
        self.counters: List[Tuple[Module, int, int]] = []  # (module, hook counter, number of hooks)
        self.version = -1  # tree_version() when the tree was last seen unchanged
        self.snapshot_valid = False
        self.refusal: Optional[str] = None  # why the whole model stays layer by layer


class PlanRunner(Module):
    """Runs a Q model's forward as a prepared :class:`megq.kernels.Plan` (see the module docstring).

    ``trusted``: plan even if some module's ``forward`` is user code (``megq.quantization.compile``).
    Not a child of the model (it lives in the private attribute ``_plan_runner``); ``Module.__call__`` hands it
    each call of the model's root.
    """

    _transient_attrs = ("_state",)

    def __init__(self, trusted: bool = False) -> None:
        super().__init__()
        self.trusted = bool(trusted)

    def __deepcopy__(self, memo: dict) -> "PlanRunner":
        return PlanRunner(self.trusted)  # plans point at the original's packed weights: the copy makes its own

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_state"}

    def _st(self) -> _State:
        st = self.__dict__.get("_state")
        if st is None:
            st = self.__dict__.setdefault("_state", _State())
        return st

    def forward(self, *args: Any) -> Any:
        raise TypeError("PlanRunner is not called directly: it runs the model it is attached to")

    # -- the module-tree snapshot ---------------------------------------------------------------------------------
    def _snapshot(self, root: Module, st: _State) -> None:
        """Record the tree (parent -> child links, hook counters) and decide whether it may be planned."""
        st.links, st.list_links, st.counters, st.refusal = [], [], [], None
        st.version = tree_version()
        for _, m in root.named_modules():
            st.counters.append((m, m._hook_counter, len(m._forward_hooks) + len(m._forward_pre_hooks)))
            for key, value in vars(m).items():
                if key.startswith("_"):
                    continue
                if isinstance(value, Module):
                    st.links.append((m.__dict__, key, value))
                elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Module) for v in value):
                    st.links.append((m.__dict__, key, value))
                    if isinstance(value, list):  # a list changes in place, unseen by tree_version()
                        st.list_links.extend((value, i, v) for i, v in enumerate(value))
            if st.refusal is None:
                hooks = list(m._forward_hooks.values()) + list(m._forward_pre_hooks.values())
                if not all(_transparent_hook(h) for h in hooks):
                    st.refusal = f"{type(m).__name__} has a forward hook"
                elif not self.trusted and not _megq_forward(type(m)):
                    st.refusal = (f"{type(m).__name__}.forward is not megq's (opt in with "
                                  f"megq.quantization.compile(model))")
        st.plans.clear()
        st.snapshot_valid = True

    @staticmethod
    def _unchanged(st: _State) -> bool:
        """True if the tree is as at the snapshot: one comparison when no module attribute was assigned and no hook
        added or removed anywhere since the last check, else a walk over the recorded links and hooks."""
        for container, key, child in st.list_links:
            if key >= len(container) or container[key] is not child:
                return False
        version = tree_version()
        if version == st.version:
            return True
        for container, key, child in st.links:
            if container.get(key) is not child:
                return False
        for m, counter, hooks in st.counters:
            if m._hook_counter != counter or len(m._forward_hooks) + len(m._forward_pre_hooks) != hooks or m.training:
                return False
        st.version = version
        return True

    # -- calls ------------------------------------------------------------------------------------------------------
    def run(self, root: Module, args: tuple, kwargs: dict) -> Any:
        """The model's output for ``root(*args, **kwargs)`` from a plan, or NotImplemented: run layer by layer."""
        if kwargs or not args or root.training or getattr(_local, "tracing", False):
            return NotImplemented
        converted = [_input(a) for a in args]
        if any(c is None for c in converted):
            return NotImplemented
        inputs = [c[0] for c in converted]
        st = self._st()
        if not (st.snapshot_valid and self._unchanged(st)):
            if not st.lock.acquire(blocking=False):
                return NotImplemented
            try:
                self._snapshot(root, st)
            finally:
                st.lock.release()
        if st.refusal is not None:
            return NotImplemented
        key = tuple(c[1] for c in converted)
        entry = st.plans.get(key, False)
        if entry is False:  # not traced yet for this shape
            if any(0 in x.shape for x in inputs) or not st.lock.acquire(blocking=False):
                return NotImplemented  # an empty input has nothing to plan; another thread is tracing
            try:
                return self._trace(root, args, inputs, key, st)
            finally:
                st.lock.release()
        if entry is None:
            return NotImplemented
        try:
            st.plans.move_to_end(key)  # least recently used goes first
        except KeyError:  # dropped by another thread meanwhile; this call still runs it
            pass
        outs = entry.plan.run(inputs)
        return _rebuild(entry.spec, outs)

    def _trace(self, root: Module, args: tuple, inputs: List[np.ndarray], key: tuple, st: _State) -> Any:
        """Run the forward layer by layer with a tracer; keep the plan it describes if it reproduces the result."""
        trace = _Trace(args, inputs)
        _local.tracing = True
        _local_tracer(trace)
        try:
            result = root(*args)  # errors (bad input) propagate exactly as on the layer-by-layer path
        finally:
            _local_tracer(None)
            _local.tracing = False
        entry: Optional[_Plan] = None
        try:
            if trace.failure is not None:
                raise _Unsupported(trace.failure)
            spec = trace.outputs(result)
            trace.plan.finalize()
            entry = _Plan(trace.plan, spec)
            if not _same(result, _rebuild(spec, trace.plan.run(inputs))):
                logger.warning("megq plan: %s's plan did not reproduce the layer-by-layer result; running it layer "
                               "by layer", type(root).__name__)
                entry = None
        except (_Unsupported, TypeError, ValueError, MemoryError) as e:
            logger.debug("megq plan: %s runs layer by layer for input shapes %s: %s", type(root).__name__, key, e)
            entry = None
        st.plans[key] = entry
        while len(st.plans) > MAX_PLANS:
            st.plans.popitem(last=False)
        if entry is None:
            self._plan_children(root)
        return result

    def _plan_children(self, root: Module) -> None:
        """The forward cannot be one plan (a float layer, an op without a step ...): give the direct children that
        hold at least two quantized layers their own runners, so the quantized parts run as plans between the
        Python parts (a child that fails in turn hands on to its children)."""
        from .module import QuantizedModule

        for _, child in root.named_children():
            if isinstance(child, QuantizedModule) or child.__dict__.get("_plan_runner") is not None:
                continue
            if sum(isinstance(m, QuantizedModule) for m in child.modules()) >= 2:
                child.__dict__["_plan_runner"] = PlanRunner(self.trusted)


def attach_plan_runner(model: Module, trusted: bool = False) -> Module:
    """Give ``model`` (a Q model's root) a :class:`PlanRunner`, replacing any previous one; returns ``model``."""
    model.__dict__["_plan_runner"] = PlanRunner(trusted)
    return model


def plan_status(model: Module) -> Dict[str, Any]:
    """What the runner of ``model`` holds: ``{"attached", "trusted", "refusal", "plans": {shapes: info}}`` with,
    per traced input shape, None (runs layer by layer) or ``{"steps", "tensors", "arena_bytes", "splittable"}``
    (``splittable``: a batch runs as per-thread slices of whole images, see :mod:`megq.kernels.plan`)."""
    runner = model.__dict__.get("_plan_runner")
    if runner is None:
        return {"attached": False, "trusted": False, "refusal": None, "plans": {}}
    st = runner._st()
    plans = {k: None if v is None else {"steps": v.plan.num_steps, "tensors": v.plan.num_tensors,
                                        "arena_bytes": v.plan.arena_bytes, "splittable": v.plan.splittable}
             for k, v in st.plans.items()}
    return {"attached": True, "trusted": runner.trusted, "refusal": st.refusal, "plans": plans}
