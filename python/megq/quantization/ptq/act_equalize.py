"""Activation range equalization: rescale the channels of a ReLU/ReLU6 layer's output so that every channel spans
the range of the widest one, and compensate in the consuming conv's input weights.

Why: activations are quantized per tensor (one grid for all channels), so a channel whose values stay within a
tenth of the tensor's range gets a tenth of its levels. In depthwise-separable nets this is where the error is:
the expansion conv's ReLU6 output feeds a depthwise conv whose BN-folded weights then amplify the rounding noise of
the small channels (MobileNetV2: leaving only ``features.2.conv.0``'s output unquantized lifts the worst test
images' logit cosine by up to 0.02). Weights are quantized per output channel, so moving a factor into a
consumer's input channel costs little there (with per-tensor weights it trades weight levels for activation levels,
as Nagel et al.'s cross-layer equalization does for weights: "Data-Free Quantization Through Weight Equalization
and Bias Correction", ICCV 2019).

For a pair ``B(act(A(x)))`` (found as in :func:`equalize`: B the only consumer of A's output), with ``m_i`` the
largest value of A's output channel ``i`` over the calibration data and ``T = max_i m_i``, output channel ``i`` of A
is multiplied by ``c_i = min(T / m_i, max_factor)`` (through the BN's gamma and beta, or the conv's weight and
bias) and input channel ``i`` of B divided by it.

Exactness: for ReLU (positively homogeneous) the float function is unchanged for every input. For ReLU6,
``relu6(c x) = c relu6(x)`` holds wherever ``c x <= 6``, i.e. wherever channel ``i`` stays within ``6 / c_i >= m_i``
-- everywhere on the calibration data (the model's output on the calibration batches is checked). An input that
drives the channel beyond ``6 / c_i`` is clipped there instead of at 6: a per-channel clip at (at least) the
calibrated maximum, like the clipping every activation range makes.

With ``linear=True`` pairs whose A has no activation are equalized too (exact for every input: A is linear). Such
an A (a projection conv) feeds a full conv, not a depthwise one, but its output has no ReLU to spend half of a
per-tensor grid on, and its channels differ as much: on MobileNetV2 the first block's projection
(``features.1.conv.1``, 16 channels) is among the three activations whose quantization costs the most, and
equalizing it and ``features.17.conv.2`` lifts the weight-rounded per-channel model's logit cosine from 0.9951 to
0.9956 (docs/accuracy.md).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from ...autodiff import no_grad
from ...module.module import Module
from ..integer_eval import integer_eval
from ._common import as_float, collect_batches
from ._state import quant_state
from .equalize import _act, _apply, _out_scale_params, _output, _trace_pairs

__all__ = ["equalize_activations"]

_ACTS = ("relu", "relu6")


def _depthwise(m: Module) -> bool:
    conv = getattr(m, "conv", m)
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def _factors(hi: np.ndarray, lo: Any, max_factor: float) -> Any:
    """Per-channel factors ``c``: each channel's range times ``c`` fits the widest, capped at ``max_factor``; None
    when nothing changes. ``hi``: per-channel maxima; ``lo``: per-channel minima of a signed (no activation) output,
    None for a ReLU output (the factor then only has to fit the top). A signed channel is scaled until its maximum
    reaches the largest maximum or its minimum the smallest minimum, whichever comes first (the per-tensor grid
    spans ``[min_i lo_i, max_i hi_i]``)."""
    hi = np.maximum(np.asarray(hi, np.float64), 0.0)
    top = float(hi.max())
    c = np.where(hi > 0, top / np.where(hi > 0, hi, 1.0), np.inf)
    if lo is not None:
        lo = np.minimum(np.asarray(lo, np.float64), 0.0)
        bottom = float(lo.min())
        c = np.minimum(c, np.where(lo < 0, bottom / np.where(lo < 0, lo, -1.0), np.inf))
    c = np.where(np.isfinite(c), np.minimum(c, max_factor), 1.0)
    if (top <= 0 and (lo is None or bottom >= 0)) or np.all(c == 1.0):
        return None
    return c


def equalize_activations(model: Module, batches: Any, *, max_factor: float = 16.0, depthwise_only: bool = True,
                         linear: bool = False, tolerance: float = 1e-4) -> Dict[Tuple[str, str], np.ndarray]:
    """Equalize the output channel ranges of every ReLU/ReLU6 conv feeding a single conv (module docstring), in
    place, on a float model or a QAT model before calibration. Returns ``{(A, B): factors c}``.

    ``batches``: the calibration inputs (the per-channel maxima are taken over all of them; the first is used to
    trace the pairs); ``max_factor``: the largest factor applied (channels that are nearly always zero would
    otherwise get huge ones); ``depthwise_only``: only pairs whose B is a depthwise conv, where a per-channel weight
    grid absorbs the factor for free (a full conv B shares one weight scale per output channel across its input
    channels, whose small columns would lose levels: measured worse on MobileNetV2); ``linear``: also pairs whose A
    has no activation (a projection conv whose output feeds only the next conv, e.g. MobileNetV2's
    ``features.1.conv.1 -> features.2.conv.0``), any B: exact for every input, and each signed channel is scaled
    until its maximum or its minimum reaches the tensor's (``_factors``); ``tolerance``: the model's
    output on every batch must stay within this relative max difference, else the pair is undone exactly. The
    train/eval mode and quantization flags are restored.
    """
    if not isinstance(model, Module):
        raise TypeError(f"equalize_activations: model must be a megq Module, got {type(model).__name__}")
    if isinstance(max_factor, bool) or not isinstance(max_factor, (int, float)) or not max_factor >= 1:
        raise ValueError(f"equalize_activations: max_factor must be a number >= 1, got {max_factor!r}")
    if not isinstance(depthwise_only, bool):
        raise TypeError(f"equalize_activations: depthwise_only must be a bool, got {type(depthwise_only).__name__}")
    if not isinstance(linear, bool):
        raise TypeError(f"equalize_activations: linear must be a bool, got {type(linear).__name__}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
        raise ValueError(f"equalize_activations: tolerance must be a positive number, got {tolerance!r}")
    data = collect_batches(batches, None, "equalize_activations")
    training = model.training
    model.eval()
    table = dict(model.named_modules())
    done: Dict[Tuple[str, str], np.ndarray] = {}
    try:
        with integer_eval(False), quant_state(model, fake_quant=False, observer=False, restore=True):
            acts = _ACTS + ((None,) if linear else ())
            pairs = [(a, b) for a, b in _trace_pairs(model, data[0], acts)
                     if _act(table[a]) in acts and _out_scale_params(table[a])[0] is not None
                     and (_depthwise(table[b]) or not depthwise_only or _act(table[a]) is None)]
            if not pairs:
                return done
            maxima: Dict[str, np.ndarray] = {}
            minima: Dict[str, np.ndarray] = {}

            def hook_for(name: str):
                def hook(mod: Module, inputs: tuple, out: Any) -> None:
                    v = as_float(out)
                    axes = tuple(i for i in range(v.ndim) if i != 1)
                    hi, lo = v.max(axis=axes), v.min(axis=axes)
                    maxima[name] = hi if name not in maxima else np.maximum(maxima[name], hi)
                    minima[name] = lo if name not in minima else np.minimum(minima[name], lo)
                return hook

            handles = [table[a].register_forward_hook(hook_for(a)) for a, _ in pairs]
            try:
                refs = []
                with no_grad():
                    for x in data:
                        refs.append(_output(model, x))
            finally:
                for h in handles:
                    h.remove()
            plan = []
            for a, b in pairs:
                c = _factors(maxima[a], minima[a] if _act(table[a]) is None else None, max_factor)
                if c is None:
                    continue
                if not np.all(c == 1.0):
                    plan.append((a, b, c))

            def params_of(a: str, b: str) -> List[Any]:
                return [p for p in (*_out_scale_params(table[a]), getattr(table[b], "conv", table[b]).weight)
                        if p is not None]

            def unchanged(batch_ids: List[int]) -> bool:
                return all(float(np.abs(_output(model, data[i]) - refs[i]).max())
                           <= tolerance * max(float(np.abs(refs[i]).max()), 1e-30) for i in batch_ids)

            saved = {(a, b): [np.array(p.numpy(), copy=True) for p in params_of(a, b)] for a, b, _ in plan}
            for a, b, c in plan:
                _apply(table[a], table[b], 1.0 / c)  # A's output channels * c, B's input channels / c
            if unchanged(list(range(len(data)))):
                done.update({(a, b): c for a, b, c in plan})
                return done
            # some pair changed the function (an edge the trace missed): undo all, then one pair at a time
            for a, b, _ in plan:
                for p, v in zip(params_of(a, b), saved[(a, b)]):
                    p.set_value(v)
            for a, b, c in plan:
                _apply(table[a], table[b], 1.0 / c)
                if unchanged([0]):
                    done[(a, b)] = c
                else:
                    for p, v in zip(params_of(a, b), saved[(a, b)]):
                        p.set_value(v)
    finally:
        model.train(training)
    return done

