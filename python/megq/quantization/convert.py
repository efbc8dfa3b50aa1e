"""``quantize(module)``: QFloat (QAT) model -> Q model running megq's int8 kernels."""
from __future__ import annotations

import copy
from typing import Dict, Optional

from ..module.module import Module


def _default_mapping() -> Dict[type, type]:
    """``{qat.X: quantized.X}`` for every name both namespaces define (MegEngine's name-based mapping)."""
    from ..module import qat, quantized

    names = [n for n in quantized.__all__ if n not in ("QuantizedModule", "IntegerLayer") and hasattr(qat, n)]
    return {getattr(qat, n): getattr(quantized, n) for n in names}


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
