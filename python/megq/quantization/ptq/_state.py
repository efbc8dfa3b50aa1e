"""Temporarily switch every QAT module's fake quants and observers, restoring each object's own flag after."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ...autodiff import no_grad
from ...module import qat
from ...module.module import Module
from ...tensor import Tensor
from ..integer_eval import integer_eval

__all__ = ["quant_state", "float_path", "quantized_pass"]


@contextlib.contextmanager
def quant_state(model: Module, *, fake_quant: Optional[bool] = None, observer: Optional[bool] = None,
                restore: bool = False) -> Iterator[None]:
    """Set fake quants / observers on or off (None: leave them). With ``restore`` every object's previous
    ``enabled`` flag is put back at exit; without it the new state stays (the PTQ algorithms leave a calibrated
    model in eval state: observers off, fake quants on)."""
    saved = []
    for m in model.modules():
        if not isinstance(m, qat.QATModule):
            continue
        for slot, want in (("act_fake_quant", fake_quant), ("weight_fake_quant", fake_quant),
                           ("act_observer", observer), ("weight_observer", observer)):
            obj = getattr(m, slot, None)
            if obj is None or want is None or not hasattr(obj, "enabled"):
                continue
            saved.append((obj, obj.enabled))
            obj.enabled = bool(want)
    try:
        yield
    finally:
        if restore:
            for obj, flag in saved:
                obj.enabled = flag


def float_path(model: Module) -> Any:
    """Context in which ``model`` computes its float function: a QAT model runs with fake quants and observers off
    (flags restored after; in eval mode a QAT module with its fake quants off takes its float forward, not the
    integer one), a float model as it is. The reference of ``compare`` and ``sensitivity``."""
    if not any(isinstance(m, qat.QATModule) for m in model.modules()):
        return contextlib.nullcontext()
    return quant_state(model, fake_quant=False, observer=False, restore=True)


def quantized_pass(qat_model: Module, hooks: Sequence[Tuple[Module, Callable[..., Any]]],
                   data: List[np.ndarray]) -> None:
    """One forward of the fake-quantized model (observers off, float fake-quant path rather than the integer
    eval, so that hooks may change a layer between batches' layers) over the concatenated calibration ``data``,
    with the forward hooks ``hooks`` registered for the pass only: the sequential PTQ algorithms (range search,
    weight rounding, bias correction) each set one layer from its hook while upstream layers are already set."""
    handles = [m.register_forward_hook(hook) for m, hook in hooks]
    try:
        with no_grad(), integer_eval(False), quant_state(qat_model, fake_quant=True, observer=False):
            qat_model(Tensor(np.concatenate(data)))
    finally:
        for h in handles:
            h.remove()
