"""Global min/max ranges at the network's two ends, whatever the preset's activation observer.

Why: range estimators that discount outliers (the mean of per-image min/max, percentiles, histogram searches) suit
the hidden activations, whose extremes are rare. At the two ends they do not: the input of an image network is
bounded (normalised pixels), so its extremes are ordinary saturated pixels, not outliers; and the output layer's
largest value is the top logit, which decides top-1: a mean of per-image maxima clips it on every image whose top
logit is above the mean. NNCF leaves the output layer float for the same reason.

``ends_minmax(qat_model)`` gives every ``QuantStub`` (the model input; the re-quantizing stub of a skipped layer
too) and the last quantized conv/linear layer in ``named_modules`` order (the logits, for a classifier) a
:class:`MinMaxObserver` with the observer's own mode, dtype and eps, before calibration.
"""
from __future__ import annotations

from typing import List

from ...module import qat
from ...module.module import Module
from ..observer import MinMaxObserver, PassiveObserver

__all__ = ["ends_minmax"]


def ends_minmax(qat_model: Module) -> List[str]:
    """Replace the activation observer of every QuantStub and of the last weighted QAT layer by a global min/max
    observer of the same mode, dtype and eps (module docstring), in place, before calibration. Returns the names of
    the modules changed (observers that are already plain MinMax, or passive, are left as they are)."""
    if not isinstance(qat_model, Module):
        raise TypeError(f"ends_minmax: qat_model must be a megq Module, got {type(qat_model).__name__}")
    acts = [(n, m) for n, m in qat_model.named_modules()
            if isinstance(m, qat.QATModule) and m.with_act and m.act_observer is not None]
    if not acts:
        raise ValueError("ends_minmax: qat_model has no QAT module with an activation observer (call quantize_qat "
                         "first)")
    chosen = [(n, m) for n, m in acts if isinstance(m, qat.QuantStub)]
    weighted = [(n, m) for n, m in acts if m.with_weight]
    if weighted:
        chosen.append(weighted[-1])
    changed = []
    for name, m in chosen:
        ob = m.act_observer
        if type(ob) is MinMaxObserver or isinstance(ob, PassiveObserver):
            continue
        m.act_observer = MinMaxObserver(mode=ob.mode, eps=getattr(ob, "scale_limit", 1e-5), dtype=ob.dtype)
        changed.append(name)
    return changed
