"""QAT Linear and LinearRelu."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ... import functional as F
from ...tensor import Tensor
from .. import linear as Float
from .module import QATModule

__all__ = ["Linear", "LinearRelu", "LinearRelu6"]


class _LinearQAT(QATModule):
    def _weight_channels(self) -> Optional[int]:
        return self.out_features

    def calc_linear_qat(self, inp: Tensor) -> Tensor:
        self._check_input(inp)
        w_qat = self.apply_quant_weight(self.weight)
        b_qat = self.apply_quant_bias(self.bias, inp, w_qat)
        return F.linear(inp, w_qat, b_qat)

    def folded_weight_and_bias(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(weight, bias) as float32 numpy copies; bias None if absent."""
        w = np.array(self.weight.numpy(), np.float32)
        b = None if self.bias is None else np.array(self.bias.numpy(), np.float32)
        return w, b


class Linear(Float.Linear, _LinearQAT):
    """QAT ``Linear``: ``fq_act(linear(x, fq_w(W), fq_b(b)))``."""

    def forward(self, inp: Tensor) -> Tensor:
        return self.apply_quant_activation(self.calc_linear_qat(inp))


class LinearRelu(Float.LinearRelu, _LinearQAT):
    """QAT ``LinearRelu``: ``fq_act(relu(linear(...)))``."""

    def forward(self, inp: Tensor) -> Tensor:
        return self.apply_quant_activation(F.relu(self.calc_linear_qat(inp)))


class LinearRelu6(Float.LinearRelu6, _LinearQAT):
    """QAT ``LinearRelu6``: ``fq_act(relu6(linear(...)))``."""

    def forward(self, inp: Tensor) -> Tensor:
        return self.apply_quant_activation(F.relu6(self.calc_linear_qat(inp)))
