"""QAT QuantStub (fake-quantizes the float input) and DequantStub (identity, no observers)."""
from __future__ import annotations

from typing import Any

from .. import quant_dequant as Float
from .module import QATModule

__all__ = ["QuantStub", "DequantStub"]


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
        return inp
