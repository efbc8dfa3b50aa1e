"""``quantize(module)``: QFloat (QAT) model -> Q model running megq's int8 kernels."""
from __future__ import annotations

import copy

import numpy as np
from typing import Dict, Optional

from ..module.module import Module


def _default_mapping() -> Dict[type, type]:
    """``{qat.X: quantized.X}`` for every name both namespaces define (MegEngine's name-based mapping)."""
    from ..module import qat, quantized

    names = [n for n in quantized.__all__ if n not in ("QuantizedModule", "IntegerLayer") and hasattr(qat, n)]
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
    Elemwise mode megq's kernels do not support (the message names the module).
    """
    from ..module import qat
    from .quantize import _set_child

    if not isinstance(module, Module):
        raise TypeError(f"module: expected a megq Module, got {type(module).__name__}")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace: expected a bool, got {type(inplace).__name__}")
    if not inplace:
        module = copy.deepcopy(module)
    convert = _default_mapping()
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

    def visit(parent: Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, qat.QATModule):
                _set_child(parent, name, to_quantized(child, path))
            else:
                visit(child, path)

    visit(module, "")
    return module
