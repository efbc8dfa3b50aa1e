"""QAT QuantStub (fake-quantizes the float input) and DequantStub (identity, no observers)."""
from __future__ import annotations

import weakref
from typing import Any

from .. import quant_dequant as Float
from .module import QATModule

__all__ = ["QuantStub", "DequantStub", "was_dequantized"]

# Tensors a DequantStub returned, by id (weak values: nothing is kept alive, a reused id is told apart by identity).
_DEQUANTIZED: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()


def was_dequantized(x: Any) -> bool:
    """Whether ``x`` came out of a QAT DequantStub (it still carries qparams but is outside the quantized
    region)."""
    return _DEQUANTIZED.get(id(x)) is x


class QuantStub(Float.QuantStub, QATModule):
    """``fq_act(x)``: where float input enters the quantized region."""

    with_weight = False

    def forward(self, inp: Any) -> Any:
        return self.apply_quant_activation(inp)


class DequantStub(Float.DequantStub, QATModule):
    """Identity; marks where quantized values return to float."""

    with_weight = False
    with_act = False

    def forward(self, inp: Any) -> Any:
        try:
            _DEQUANTIZED[id(inp)] = inp
        except TypeError:  # not weak-referenceable (a plain number): nothing to remember
            pass
        return inp
