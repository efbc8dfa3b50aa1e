"""Cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
Correction", ICCV 2019).

For two consecutive layers ``y = B(act(A(x)))`` with a positively homogeneous ``act`` (none or ReLU:
``act(x / s) = act(x) / s`` for ``s > 0``), output channel ``i`` of A divided by ``s_i`` and input channel ``i`` of
B multiplied by ``s_i`` leave ``y`` unchanged. With ``r1_i`` the range (max |w|) of A's folded output channel ``i``
and ``r2_i`` the range of B's input channel ``i``, ``s_i = sqrt(r1_i / r2_i)`` makes both ``sqrt(r1_i * r2_i)``:
the channels of a per-tensor weight grid are then used evenly (most useful before depthwise convs, whose channel
ranges differ by orders of magnitude).

ReLU6 is not positively homogeneous (its clip at 6 would have to become a per-channel clip at ``6 / s_i``, which
the int8 kernels do not have), so pairs joined by a ReLU6 are left alone: megq only makes exact rescalings. Pairs
are found by tracing one forward pass (which module's output tensor is which module's input tensor); an edge the
trace cannot see (a functional op that also reads A's output) is caught by checking the model's output on the
example before and after each pair, and such a pair is undone.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ... import module as M
from ...autodiff import no_grad
from ...module.module import Module
from ...tensor import Tensor
from ..integer_eval import integer_eval
from ._state import quant_state

__all__ = ["equalize"]

_LINEAR_ACTS = (None, "relu")


def _conv_like(m: Module) -> bool:
    c = getattr(m, "conv", m)
    return isinstance(c, M.Conv2d) and hasattr(m, "weight" if c is m else "conv")


def _act(m: Module) -> Optional[str]:
    return getattr(m, "fused_activation", None)


def _out_scale_params(m: Module) -> Tuple[Any, Optional[Any]]:
    """The parameters whose channel ``i`` scales output channel ``i`` of ``m`` linearly: (gamma, beta) of its BN, or
    (weight, bias) of a plain conv."""
    bn = getattr(m, "bn", None)
    if bn is not None:
        return bn.weight, bn.bias
    return m.weight, m.bias


def _folded_weight(m: Module) -> np.ndarray:
    if hasattr(m, "folded_weight_and_bias"):
        return np.asarray(m.folded_weight_and_bias()[0], np.float64)
    bn = getattr(m, "bn", None)
    conv = getattr(m, "conv", m)
    w = np.asarray(conv.weight.numpy(), np.float64)
    if bn is None:
        return w
    gamma = np.ones(w.shape[0]) if bn.weight is None else np.asarray(bn.weight.numpy(), np.float64).reshape(-1)
    var = np.asarray(bn.running_var.numpy(), np.float64).reshape(-1)
    return w * (gamma / np.sqrt(var + bn.eps)).reshape(-1, 1, 1, 1)


def _input_ranges(b: Module) -> np.ndarray:
    """max |w| per input channel of B (folded; the BN scales B's output channels only)."""
    w = np.abs(_folded_weight(b))
    groups = getattr(b, "conv", b).groups
    oc, cin_g = w.shape[0], w.shape[1]
    per_group = w.reshape(groups, oc // groups, cin_g, -1).max(axis=(1, 3))  # (groups, cin_g)
    return per_group.reshape(-1)


def _scale(param: Any, factor: np.ndarray, axis: int, groups: int = 1) -> None:
    v = np.asarray(param.numpy(), np.float64)
    if axis == 0:
        v = v * factor.reshape((-1,) + (1,) * (v.ndim - 1))
    else:  # input channel axis of a (possibly grouped) conv weight
        oc, cin_g = v.shape[0], v.shape[1]
        f = factor.reshape(groups, 1, cin_g, 1, 1)
        v = (v.reshape(groups, oc // groups, cin_g, *v.shape[2:]) * f).reshape(v.shape)
    param.set_value(v.astype(np.float32))


def _apply(a: Module, b: Module, s: np.ndarray) -> None:
    """A's output channels / s, B's input channels * s."""
    w, bias = _out_scale_params(a)
    _scale(w, 1.0 / s, 0)
    if bias is not None:
        _scale(bias, 1.0 / s, 0)
    conv_b = getattr(b, "conv", b)
    _scale(conv_b.weight, s, 1, conv_b.groups)


def _trace_pairs(model: Module, example: np.ndarray, acts: tuple = _LINEAR_ACTS) -> List[Tuple[str, str]]:
    """(A, B) names: B's input is A's output (possibly through ReLU / Identity / Dropout modules), A's output has
    no other consumer module, A is a conv (BN folded) whose fused activation is in ``acts`` (default: none or
    ReLU), B a conv whose input channels are A's output channels."""
    produced: Dict[int, str] = {}
    consumers: Dict[str, List[str]] = {}
    keep: List[Any] = []  # keeps traced tensors alive so their ids stay unique during the pass
    passthrough = (M.ReLU, M.Identity, M.Dropout)
    names = {id(m): n for n, m in model.named_modules()}
    table = dict(model.named_modules())

    def pre(mod: Module, inputs: tuple) -> None:
        name = names[id(mod)]
        if isinstance(mod, passthrough):
            return None  # counted by post: a pass-through, or a real consumer when it cannot pass
        for x in inputs:
            src = produced.get(id(x))
            if src is not None:
                consumers.setdefault(src, []).append(name)
        return None

    def post(mod: Module, inputs: tuple, out: Any) -> None:
        keep.append(out)
        name = names[id(mod)]
        if isinstance(mod, passthrough) and inputs and id(inputs[0]) in produced:
            src = produced[id(inputs[0])]
            if isinstance(mod, M.ReLU) and _act(table[src]) not in _LINEAR_ACTS:  # a ReLU module after A
                consumers.setdefault(src, []).append(name)
                return None
            produced[id(out)] = src
            consumers.setdefault(src, []).append(f"<{name}>")  # a pass-through, not a real consumer
        elif _conv_like(mod):
            produced[id(out)] = name
        return None

    # hooks on the conv layers (not inside them) and on every other leaf module
    convs = [n for n, m in model.named_modules() if _conv_like(m)]
    handles = []
    for n, m in model.named_modules():
        if any(n.startswith(c + ".") for c in convs):
            continue
        if _conv_like(m) or not list(m.children()):
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
    try:
        with no_grad():
            model(Tensor(example))
    finally:
        for h in handles:
            h.remove()
    pairs = []
    for a, cons in consumers.items():
        real = [c for c in cons if not c.startswith("<")]
        if len(real) != 1 or _act(table[a]) not in acts:
            continue
        b = real[0]
        if not _conv_like(table[b]) or _out_scale_params(table[a])[0] is None:  # a BN without affine weight
            continue
        conv_a, conv_b = getattr(table[a], "conv", table[a]), getattr(table[b], "conv", table[b])
        if conv_a.out_channels != conv_b.in_channels:
            continue
        pairs.append((a, b))
    return pairs


def _output(model: Module, example: np.ndarray) -> np.ndarray:
    with no_grad():
        y = model(Tensor(example))
    if isinstance(y, (tuple, list)):
        return np.concatenate([np.asarray(t.numpy(), np.float64).reshape(-1) for t in y])
    return np.asarray(y.numpy(), np.float64)


def equalize(model: Module, example: Any, *, iterations: int = 4, tolerance: float = 1e-4
             ) -> List[Tuple[str, str]]:
    """Cross-layer equalization of every exactly rescalable conv pair of ``model``, in place.

    ``model``: a float model, or a QAT model before calibration (its weights change, so observers must see data
    afterwards); ``example``: one input batch (array or Tensor) used to trace the pairs and to check that the
    model's output is unchanged (relative max difference <= ``tolerance``; a pair that changes it is undone).
    ``iterations`` sweeps over the pairs (a layer in two pairs converges over sweeps, as in the paper).
    Returns the (A, B) name pairs equalized. Running statistics of BatchNorm are not touched; the model is
    evaluated in eval mode and its train/eval mode, observer and fake-quant flags are restored.
    """
    if not isinstance(model, Module):
        raise TypeError(f"equalize: model must be a megq Module, got {type(model).__name__}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"equalize: iterations must be a positive int, got {iterations!r}")
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not tolerance > 0:
        raise ValueError(f"equalize: tolerance must be a positive number, got {tolerance!r}")
    x = np.asarray(example.numpy() if isinstance(example, Tensor) else example)
    if x.dtype.kind not in "fiu" or x.ndim < 2:
        raise TypeError(f"equalize: example must be a numeric input batch, got {x.dtype} {x.shape}")
    x = np.ascontiguousarray(x, np.float32)
    training = model.training
    model.eval()
    table = dict(model.named_modules())
    done: List[Tuple[str, str]] = []
    try:
        with integer_eval(False), quant_state(model, fake_quant=False, observer=False, restore=True):
            ref = _output(model, x)
            norm = max(float(np.abs(ref).max()), 1e-30)
            for it in range(iterations):
                for a, b in (_trace_pairs(model, x) if it == 0 else list(done)):
                    r1 = np.abs(_folded_weight(table[a])).reshape(table[a].conv.out_channels
                                                                   if hasattr(table[a], "conv")
                                                                   else table[a].out_channels, -1).max(axis=1)
                    r2 = _input_ranges(table[b])
                    ok = (r1 > 0) & (r2 > 0)
                    s = np.where(ok, np.sqrt(np.where(ok, r1, 1.0) / np.where(ok, r2, 1.0)), 1.0)
                    params = [p for p in (*_out_scale_params(table[a]), getattr(table[b], "conv", table[b]).weight)
                              if p is not None]
                    saved = [np.array(p.numpy(), copy=True) for p in params]
                    _apply(table[a], table[b], s)
                    if it == 0:
                        if float(np.abs(_output(model, x) - ref).max()) / norm > tolerance:
                            for p, v in zip(params, saved):  # an edge the trace missed: undo exactly
                                p.set_value(v)
                            continue
                        done.append((a, b))
    finally:
        model.train(training)
    return done
