"""Temporarily switch every QAT module's fake quants and observers, restoring each object's own flag after."""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

from ...module import qat
from ...module.module import Module

__all__ = ["quant_state"]


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
