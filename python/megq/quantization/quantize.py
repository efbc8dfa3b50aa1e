"""MegEngine's model-level workflow: ``quantize_qat`` (float → QAT), ``quantize`` (QAT → quantized),
propagate_qconfig, reset_qconfig, the enable/disable switches and EasyQuant.

Both conversions map classes by name (``megq.module.X`` → ``megq.module.qat.X`` → ``megq.module.quantized.X``), as
MegEngine's ``quantization/quantize.py`` does.
"""
from __future__ import annotations

import logging
from copy import deepcopy
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .. import module as M
from ..autodiff import no_grad
from ..module import qat, quantized
from ..module.module import HookHandle, Module
from ..qtensor import QuantizedTensor
from ..tensor import Tensor
from .integer_eval import integer_eval
from .observer import PassiveObserver
from .qconfig import QConfig, ema_fakequant_qconfig

__all__ = ["quantize_qat", "quantize", "propagate_qconfig", "reset_qconfig", "enable_fake_quant", "disable_fake_quant",
           "enable_observer", "disable_observer", "apply_easy_quant", "hook_qat_module",
           "QPARAMS_PASSTHROUGH_TYPES", "FloatIsland", "compile"]

logger = logging.getLogger("megq.quantization")


def _get_quantable_module_names() -> List[str]:
    """Names X with ``megq.module.X`` and ``megq.module.qat.X`` both defined (the mapping is name-based, as in
    MegEngine; the quantized layer uses the same names)."""
    return [n for n in qat.__all__ if n != "QATModule" and isinstance(getattr(M, n, None), type)]


def _get_convert_dict() -> Dict[type, type]:
    """Default float → QAT mapping ``{megq.module.X: megq.module.qat.X}``."""
    return {getattr(M, n): getattr(qat, n) for n in _get_quantable_module_names()}


# ------------------------------------------------------------------------------------------------------------------
# tree surgery
# ------------------------------------------------------------------------------------------------------------------

def _set_child(parent: Module, key: str, new: Module) -> None:
    if "." in key:
        attr, idx = key.split(".", 1)
        seq = getattr(parent, attr)
        if isinstance(seq, list):
            seq[int(idx)] = new
        else:
            items = list(seq)
            items[int(idx)] = new
            setattr(parent, attr, type(seq)(items) if type(seq) is tuple else tuple(items))
    else:
        setattr(parent, key, new)


def quantize_qat(module: Module, inplace: bool = True, qconfig: QConfig = ema_fakequant_qconfig,
                 mapping: Optional[Dict[type, type]] = None, skip: Optional[Sequence[str]] = None) -> Module:
    """Float → QAT: replace every quantable sub-module by its QAT class (``QATClass.from_float_module``, sharing
    parameters), then ``propagate_qconfig(module, qconfig)``. Returns the converted module.

    Skipped: children of a quantable parent (``ConvBn2d.conv``/``.bn`` stay float), modules with
    ``quantize_disabled`` (see ``Module.disable_quantize``), and modules that are already QAT. ``inplace=False``
    converts a deep copy. ``mapping`` (``{FloatClass: QATClass}``) extends/overrides the default name-based mapping.

    ``quantize_qat(model, qconfig)`` (a QConfig in the second position, as MegEngine's quantization guide writes
    it) is accepted: MegEngine's signature has ``inplace`` there, so the QConfig is taken as ``qconfig`` and
    ``inplace`` stays True.

    megq differences: the root module itself is converted too if quantable (use the return value); a second call is
    a no-op for modules already QAT (MegEngine raises ``KeyError``); a subclass of a quantable float class without its
    own mapping raises ``TypeError`` instead of ``KeyError``. Pooling / ReLU / Flatten / Identity / Dropout modules
    get a forward hook that passes their input's qparams on to their output (``QPARAMS_PASSTHROUGH_TYPES``).

    ``skip`` (mixed precision by name): dotted sub-module paths (``named_modules`` names, e.g. ``["layer4.1",
    "fc"]``) kept float. Each is wrapped in a :class:`FloatIsland` (``DequantStub`` -> the float module -> a
    ``QuantStub`` that is calibrated like any other), so its parameters move under ``<path>.module``.
    """
    if isinstance(inplace, QConfig):  # quantize_qat(model, qconfig), as MegEngine's guide writes it
        inplace, qconfig = True, inplace
    if not isinstance(inplace, bool):
        raise TypeError(f"quantize_qat: inplace must be a bool, got {inplace!r}")
    if not isinstance(qconfig, QConfig):
        raise TypeError(f"quantize_qat: qconfig must be a QConfig, got {type(qconfig).__name__}")
    if not isinstance(module, Module):
        raise TypeError(f"quantize_qat: module must be a megq Module, got {type(module).__name__}")
    if not inplace:
        module = deepcopy(module)
    convert = _get_convert_dict()
    if mapping:
        convert.update(mapping)
    keys = tuple(convert)
    for path in _check_skip(module, skip):
        _wrap_float_island(module, path)

    def quantable(m: Module) -> bool:
        return isinstance(m, keys) or isinstance(m, qat.QATModule)

    def convertible(m: Module, path: str) -> bool:
        if isinstance(m, qat.QATModule) or not isinstance(m, keys) or m.quantize_disabled:
            return False
        if type(m) not in convert:
            base = next(k for k in keys if isinstance(m, k))
            raise TypeError(f"quantize_qat: '{path or '<root>'}' is a {type(m).__name__}, a subclass of "
                            f"{base.__name__} with no QAT mapping; pass mapping={{{type(m).__name__}: QATClass}} or "
                            f"call .disable_quantize() on it")
        return True

    done: Dict[int, Module] = {}

    def to_qat(m: Module) -> Module:
        if id(m) not in done:
            done[id(m)] = convert[type(m)].from_float_module(m)
        return done[id(m)]

    if convertible(module, ""):
        module = to_qat(module)

    visited = set()

    def visit(parent: Module, prefix: str) -> None:
        if id(parent) in visited:
            return
        visited.add(id(parent))
        parent_quantable = quantable(parent)
        for key, child in list(parent.named_children()):
            path = f"{prefix}.{key}" if prefix else key
            if id(child) in done:
                _set_child(parent, key, done[id(child)])
                child = done[id(child)]
            elif not parent_quantable and convertible(child, path):
                child = to_qat(child)
                _set_child(parent, key, child)
            visit(child, path)

    visit(module, "")
    propagate_qconfig(module, qconfig)
    _install_qparams_passthrough(module)
    return module


class FloatIsland(Module):
    """A sub-module kept float inside a quantized network (``quantize_qat(..., skip=[path])``): its inputs are
    dequantized (``DequantStub``), it runs in float, and its outputs are quantized again by a ``QuantStub`` whose
    observer is calibrated with the rest of the model. Tuple/list outputs are re-quantized element by element
    through the one stub (they share its scale)."""

    def __init__(self, module: Module) -> None:
        super().__init__()
        self.dequant = M.DequantStub()
        self.module = module.disable_quantize()
        self.quant = M.QuantStub()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        args = tuple(self.dequant(a) if isinstance(a, (Tensor, QuantizedTensor)) else a for a in args)
        out = self.module(*args, **kwargs)
        if isinstance(out, (list, tuple)):
            return type(out)(self.quant(o) if isinstance(o, Tensor) else o for o in out)
        return self.quant(out)


def _check_skip(module: Module, skip: Any) -> List[str]:
    """Validated ``skip`` paths, outermost first; a path inside another skipped path is dropped."""
    if skip is None:
        return []
    if isinstance(skip, str) or not isinstance(skip, (list, tuple, set, frozenset)):
        raise TypeError(f"quantize_qat: skip must be a list of sub-module names, got {type(skip).__name__}")
    names = dict(module.named_modules())
    paths = []
    for p in skip:
        if not isinstance(p, str):
            raise TypeError(f"quantize_qat: skip entries must be str, got {type(p).__name__}")
        if p == "" or p not in names:
            some = ", ".join(list(names)[1:9])
            raise ValueError(f"quantize_qat: skip: no sub-module named {p!r} (names look like: {some}, ...)")
        paths.append(p)
    paths.sort(key=lambda q: q.count("."))
    return [p for i, p in enumerate(paths) if not any(p == q or p.startswith(q + ".") for q in paths[:i])]


def _wrap_float_island(root: Module, path: str) -> None:
    parent = root
    *head, last = path.split(".")
    for part in head:
        parent = getattr(parent, part)
    child = getattr(parent, last)
    if isinstance(child, FloatIsland):
        return
    if isinstance(child, qat.QATModule):
        raise ValueError(f"quantize_qat: skip: {path!r} is already a QAT module; skip it in the float model")
    setattr(parent, last, FloatIsland(child))


def _name_quant_children(module: Module) -> None:
    for name, m in list(module.named_modules()):
        if isinstance(m, qat.QATModule):
            for slot in ("weight_observer", "act_observer", "weight_fake_quant", "act_fake_quant"):
                obj = getattr(m, slot, None)
                if obj is not None:
                    obj.name = f"{name}.{slot}" if name else slot


def propagate_qconfig(module: Module, qconfig: QConfig) -> None:
    """``set_qconfig(qconfig)`` on every QAT module: fresh observers / fake quants (statistics are reset)."""
    if not isinstance(qconfig, QConfig):
        raise TypeError(f"propagate_qconfig: qconfig must be a QConfig, got {type(qconfig).__name__}")
    for m in list(module.modules()):
        if isinstance(m, qat.QATModule):
            m.set_qconfig(qconfig)
    _name_quant_children(module)


def reset_qconfig(module: Module, qconfig: QConfig, inplace: bool = True) -> Module:
    """Swap to ``qconfig`` while keeping the learned qparams: read each QAT module's current weight/activation
    qparams, create the new observers / fake quants and call ``set_qparams(old)`` on those that have it
    (PassiveObserver, TQT, LSQ). Typical: calibrate or EMA-train, then ``reset_qconfig(net, tqt_qconfig)``."""
    if not isinstance(qconfig, QConfig):
        raise TypeError(f"reset_qconfig: qconfig must be a QConfig, got {type(qconfig).__name__}")
    if not inplace:
        module = deepcopy(module)

    def make(factory: Optional[Callable], qparams: Any) -> Any:
        inst = factory() if factory is not None else None
        if inst is not None and hasattr(inst, "set_qparams"):
            if qparams is None:
                raise ValueError(f"reset_qconfig: {type(inst).__name__}.set_qparams needs qparams, but the module has "
                                 "none (no observer or learned fake quant before the reset)")
            inst.set_qparams(qparams)
        return inst

    for m in list(module.modules()):
        if not isinstance(m, qat.QATModule):
            continue
        if m.with_weight:
            wq = m.get_weight_qparams()
            m.weight_observer = make(qconfig.weight_observer, wq)
            m.weight_fake_quant = make(qconfig.weight_fake_quant, wq)
            m._init_weight_channels()  # sizes new per-channel observers (no-op for the others)
        if m.with_act:
            aq = m.get_activation_qparams()
            m.act_observer = make(qconfig.act_observer, aq)
            m.act_fake_quant = make(qconfig.act_fake_quant, aq)
    _name_quant_children(module)
    return module


def _set_all(module: Module, method: str, value: bool) -> None:
    for m in list(module.modules()):
        if isinstance(m, qat.QATModule):
            getattr(m, method)(value)


def enable_fake_quant(module: Module) -> None:
    """Enable every QAT module's fake quants."""
    _set_all(module, "set_fake_quant", True)


def disable_fake_quant(module: Module) -> None:
    """Disable every QAT module's fake quants (the QAT model then runs float, observers still watching)."""
    _set_all(module, "set_fake_quant", False)


def enable_observer(module: Module) -> None:
    """Enable every QAT module's observers (e.g. calibration after ``model.eval()``)."""
    _set_all(module, "set_observer", True)


def disable_observer(module: Module) -> None:
    """Disable every QAT module's observers (freeze scales). Note ``model.train()`` re-enables them."""
    _set_all(module, "set_observer", False)


def hook_qat_module(module: Module, func: Callable) -> List[HookHandle]:
    """Register ``func(module, inputs, output)`` as a forward hook on every QAT module; returns the handles."""
    return [m.register_forward_hook(func) for m in list(module.modules()) if isinstance(m, qat.QATModule)]


# ------------------------------------------------------------------------------------------------------------------
# qparams pass-through for float ops that keep the quantization grid
# ------------------------------------------------------------------------------------------------------------------

def _passthrough_types() -> tuple:
    return (M.MaxPool2d, M.AvgPool2d, M.AdaptiveAvgPool2d, M.Flatten, M.Identity, M.Dropout, M.ReLU, M.ReLU6)


def _float_only_activations() -> tuple:
    """Activation modules with no int8 form: inside the quantized region ``quantize()`` refuses them."""
    return (M.Sigmoid, M.HSwish)


def _note_quantized_input(module: Module, inputs: tuple) -> None:
    """Forward pre-hook on activation modules: remembers that an input arrived quantized (a tensor carrying
    qparams that no DequantStub returned, or a QuantizedTensor in the exact eval path), i.e. that the module sits
    in the quantized region."""
    x = inputs[0] if inputs else None
    if isinstance(x, QuantizedTensor) or (
            (getattr(x, "qparams", None) is not None or qat.module.in_quantized_region(x))
            and not qat.quant_dequant.was_dequantized(x)):
        if not module.__dict__.get("_saw_quantized_input"):  # assign once: an assignment invalidates plans' checks
            module._saw_quantized_input = True
    return None


# Never changes a QuantizedTensor: a Q model's execution plan may run past it (megq.module.quantized.plan).
_note_quantized_input.plan_transparent = True  # type: ignore[attr-defined]

QPARAMS_PASSTHROUGH_TYPES = _passthrough_types


def _pass_qparams(module: Module, inputs: tuple, output: Any) -> None:
    if (isinstance(output, Tensor) and output.qparams is None and inputs and isinstance(inputs[0], Tensor)
            and inputs[0].qparams is not None):
        output.qparams = inputs[0].qparams
    elif isinstance(output, Tensor) and inputs and qat.module.in_quantized_region(inputs[0]):
        qat.module.mark_quantized_region(output)
    return None


_pass_qparams.plan_transparent = True  # type: ignore[attr-defined]  # float Tensors only (see above)


def _install_qparams_passthrough(module: Module) -> None:
    types = _passthrough_types()
    for m in list(module.modules()):
        if isinstance(m, types) and not isinstance(m, qat.QATModule) and not m.quantize_disabled:
            if _pass_qparams not in m._forward_hooks.values():
                m.register_forward_hook(_pass_qparams)
        if isinstance(m, types + _float_only_activations()) and not isinstance(m, qat.QATModule):
            if _note_quantized_input not in m._forward_pre_hooks.values():
                m.register_forward_pre_hook(_note_quantized_input)


# ------------------------------------------------------------------------------------------------------------------
# EasyQuant
# ------------------------------------------------------------------------------------------------------------------

def _split(x: Any, sl: slice) -> Any:
    if isinstance(x, Tensor):
        return x[sl]
    if isinstance(x, (list, tuple)):
        return type(x)(_split(v, sl) for v in x)
    return x


def _cosine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    a = x.reshape(n, -1).astype(np.float64)
    b = y.reshape(n, -1).astype(np.float64)
    up = (a * b).sum(axis=1)
    down = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(down > 0, up / np.where(down > 0, down, 1), 0.0)


def apply_easy_quant(module: Module, data: Any, start: float = 0.8, stop: float = 1.2, num: int = 40) -> Module:
    """EasyQuant (arXiv 2006.16669) scale search, as MegEngine: needs PassiveObservers
    (``reset_qconfig(net, passive_qconfig)`` first). ``data`` is run as ``[data; data]``; a hook on each QAT module
    compares, per candidate scale in ``linspace(start, stop, num) * orig_scale``, the fake-quant output on the second
    half with the float output on the first half (batch-mean cosine similarity) and keeps the best; first for the
    weight observers, then the activation observers. Runs with ``no_grad`` and the float fake-quant eval path.

    megq difference: modules without the searched observer still return ``[float half; fake-quant half]`` (MegEngine
    returns its all-fake-quant output unchanged).
    """
    from .. import functional as F
    from ..tensor import as_tensor

    data = as_tensor(data)
    batch = data.shape[0]
    for m in module.modules():
        if isinstance(m, qat.QATModule):
            for ob in (m.weight_observer, m.act_observer):
                if ob is not None and not isinstance(ob, PassiveObserver):
                    raise ValueError("apply_easy_quant needs PassiveObservers: call reset_qconfig(net, "
                                     f"passive_qconfig) first ({ob._label()} is a {type(ob).__name__})")

    handles: Dict[int, HookHandle] = {}

    def search(mod: Module, inputs: tuple, outputs: Any, where: str) -> Any:
        h = handles.pop(id(mod), None)
        if h is not None:
            h.remove()
        normal_in = [_split(x, slice(None, batch)) for x in inputs]
        fq_in = [_split(x, slice(batch, None)) for x in inputs]
        mod.set_fake_quant(False)
        normal_out = mod(*normal_in)
        mod.set_fake_quant(True)
        ob = getattr(mod, where)
        if ob is not None:
            orig_scale = ob.orig_scale
            if orig_scale is None:
                raise ValueError(f"apply_easy_quant: {ob._label()} has no qparams (call reset_qconfig first)")
            best, optimal = 0.0, None
            for scale in np.linspace(start * orig_scale, stop * orig_scale, num):
                ob.scale = scale
                out = mod(*fq_in)
                dis = float(_cosine(normal_out.numpy(), out.numpy()).mean())
                if dis > best:
                    best, optimal = dis, scale
            if optimal is None:
                logger.warning("EasyQuant finds no better scale")
                ob.scale = orig_scale
            else:
                ob.scale = optimal
        return F.concat([normal_out, _split(outputs, slice(batch, None))], 0)

    both = F.concat([data, data], 0)
    with no_grad(), integer_eval(False):
        for where in ("weight_observer", "act_observer"):
            for m in list(module.modules()):
                if isinstance(m, qat.QATModule):
                    handles[id(m)] = m.register_forward_hook(partial(search, where=where))
            try:
                module(both)
            finally:
                for h in handles.values():
                    h.remove()
                handles.clear()
    return module


# ------------------------------------------------------------------------------------------------------------------
# QAT -> quantized
# ------------------------------------------------------------------------------------------------------------------

def _get_quantized_convert_dict() -> Dict[type, type]:
    """Default QAT → quantized mapping ``{megq.module.qat.X: megq.module.quantized.X}`` (every name both define)."""
    names = [n for n in quantized.__all__ if n != "QuantizedModule" and hasattr(qat, n)]
    return {getattr(qat, n): getattr(quantized, n) for n in names}


def _has_seen_data(observer) -> bool:
    """False for an observer that never recorded a batch (its scale would be the eps floor, not data)."""
    if observer is None:
        return True
    histogram = getattr(observer, "histogram", None)
    if histogram is not None:
        return float(np.asarray(histogram.numpy()).reshape(-1)[0]) != -1.0
    if hasattr(observer, "qparams") and not hasattr(observer, "min_val"):  # PassiveObserver
        return getattr(observer, "qparams", None) is not None
    min_val, max_val = getattr(observer, "min_val", None), getattr(observer, "max_val", None)
    if min_val is None or max_val is None:
        return True
    return bool(np.all(np.asarray(min_val.numpy()) <= np.asarray(max_val.numpy())))


def quantize(module: Module, inplace: bool = True, mapping: Optional[Dict[type, type]] = None) -> Module:
    """Replace every QAT sub-module by its quantized counterpart (``Q.from_qat_module(qat)``).

    Weights are quantized to int8 now (BN folded with the running statistics); the kernels pack them
    at the first call, once the input's scale and zero point are known. As in MegEngine the new
    modules are in training mode and refuse to run until ``model.eval()`` is called. ``inplace=False``
    converts a deep copy. ``mapping`` (``{QATClass: QuantizedClass}``) extends the default mapping.

    Raises ValueError if a module was never calibrated or trained (no scale yet), uses a dtype or an
    Elemwise mode megq's kernels do not support, or is an activation with no int8 form (Sigmoid, HSwish) that
    received quantized inputs during calibration or QAT, i.e. sits inside the quantized region (the message names
    the module). Activation modules ReLU and ReLU6 run on the quantized values (clamp bounds).

    Float layers left in the Q model (``disable_quantize``) run with the BLAS limited to ``megq.get_num_threads()``
    threads, so ``megq.set_num_threads`` governs the whole Q model.
    """
    if not isinstance(module, Module):
        raise TypeError(f"module: expected a megq Module, got {type(module).__name__}")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace: expected a bool, got {type(inplace).__name__}")
    if not inplace:
        module = deepcopy(module)
    convert = _get_quantized_convert_dict()
    if mapping:
        convert.update(mapping)

    def to_quantized(m: Module, path: str) -> Module:
        for which in ("act_observer", "weight_observer"):
            if not _has_seen_data(getattr(m, which, None)):
                raise ValueError(f"quantize: '{path}' was never calibrated: its {which} has seen no data; run "
                                 f"data through the QFloat model (calibration or QAT) before quantize()")
        target = convert.get(type(m))
        if target is None:
            raise TypeError(f"quantize: '{path}' is a {type(m).__name__} with no quantized mapping; pass "
                            f"mapping={{{type(m).__name__}: QuantizedClass}}")
        try:
            return target.from_qat_module(m)
        except ValueError as e:
            raise ValueError(f"quantize: '{path}': {e}") from None

    if isinstance(module, qat.QATModule):
        return to_quantized(module, "<root>")
    for path, m in module.named_modules():
        if isinstance(m, _float_only_activations()) and m.__dict__.get("_saw_quantized_input"):
            raise ValueError(f"quantize: '{path}' is a {type(m).__name__} inside the quantized region (its input "
                             f"was quantized during calibration/QAT), and megq has no int8 {type(m).__name__}: put a "
                             f"DequantStub before it (and a QuantStub after it if quantized layers follow)")

    def visit(parent: Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, qat.QATModule):
                _set_child(parent, name, to_quantized(child, path))
            else:
                visit(child, path)

    visit(module, "")
    for m in module.modules():
        # a float layer with weights left in the Q model: its BLAS calls follow megq's thread setting
        if not isinstance(m, (qat.QATModule, quantized.QuantizedModule)) and any(True for _ in m.parameters(False)):
            m._blas_threads_as_megq = True
    if not isinstance(module, quantized.QuantizedModule):
        quantized.plan.attach_plan_runner(module)  # one C++ call per forward where the model allows (see compile)
    return module


def compile(model: Module, enabled: bool = True) -> Module:  # noqa: A001  (megq.quantization.compile)
    """Run the Q model ``model`` through prepared execution plans (``enabled=True``) or always layer by layer
    (``enabled=False``); returns ``model``.

    A plan is one C++ call per forward: at the first eval call for an input shape the forward is traced layer by
    layer, its kernel calls become a :class:`megq.kernels.Plan` (activations in one arena allocated once), and
    later calls with that shape run the plan with the GIL released, bit for bit equal to the layer-by-layer path.
    Anything the plan cannot express (a float layer, an op without a plan step, a user hook, keyword arguments)
    keeps the model on the layer-by-layer path; see :mod:`megq.module.quantized.plan`.

    ``quantize()`` already gives its result a runner that plans models whose modules all run megq's own
    ``forward`` code (the zoo's ResNets and MobileNetV2 ...). ``compile(model)`` also plans models with a
    user-written ``forward``, on the user's word that it takes the same path for every input of a shape (a trace
    records one path); it drops existing plans, which are rebuilt on demand. Plans are never saved: a model loaded
    with ``megq.load`` plans again (its runner is saved), and a file written before plans existed needs
    ``compile(model)``.
    """
    if not isinstance(model, Module):
        raise TypeError(f"model: expected a megq Module, got {type(model).__name__}")
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled: expected a bool, got {type(enabled).__name__}")
    for m in model.modules():  # a fresh start: sub-module runners (made when the whole forward was not plannable)
        m.__dict__.pop("_plan_runner", None)
    if enabled:
        quantized.plan.attach_plan_runner(model, trusted=True)
    return model
