"""QAT Elemwise and Concat: float op, then activation observer + fake quant (no weights)."""
from __future__ import annotations

from typing import Sequence

from ... import functional as F
from ...tensor import Tensor
from .. import elemwise as Float
from .module import QATModule

__all__ = ["Elemwise", "Concat"]


class Elemwise(Float.Elemwise, QATModule):
    """QAT ``Elemwise(method)``: ``fq_act(op(*inputs))``."""

    with_weight = False

    def forward(self, *inps: Tensor) -> Tensor:
        return self.apply_quant_activation(Float.Elemwise.forward(self, *inps))


class Concat(Float.Concat, QATModule):
    """QAT ``Concat``: ``fq_act(concat(inps, axis))``. Deviation: no (unused) weight observer/fake quant, unlike
    MegEngine's, which does not override ``with_weight``."""

    with_weight = False

    def forward(self, inps: Sequence[Tensor], axis: int = 0) -> Tensor:
        return self.apply_quant_activation(F.concat(inps, axis))
