"""QAT LinearBn1d / LinearBnRelu1d: the same BN folding as ConvBn2d with a per-row weight scale."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ... import functional as F
from ...tensor import Tensor
from .. import linear_bn as Float
from ._bn_fold import check_bn, fold_bn
from .module import QATModule

__all__ = ["LinearBn1d", "LinearBnRelu1d"]


class _LinearBnQAT(QATModule):
    def _check_float_module(self, float_module) -> None:
        check_bn(type(self).__name__, self.bn)

    def _weight_channels(self) -> Optional[int]:
        return self.linear.out_features

    def fold_weight_bias(self, training: bool):
        return fold_bn(self.linear.weight, self.linear.bias, self.bn, with_bias=not training)

    def calc_linear_bn_qat(self, inp: Tensor) -> Tensor:
        self.linear._check_input(inp)
        training = self.training
        w_fold, b_fold, k = self.fold_weight_bias(training)
        w_qat = self.apply_quant_weight(w_fold)
        b_qat = self.apply_quant_bias(b_fold, inp, w_qat)
        y = F.linear(inp, w_qat, b_qat)
        if not training:
            return y
        y = y / k
        if self.linear.bias is not None:
            y = y + self.linear.bias
        return self.bn(y)

    def folded_weight_and_bias(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Eval-mode folded (weight, bias), float32 numpy, exactly as the eval forward computes them."""
        w, b, _ = self.fold_weight_bias(training=False)
        return np.array(w.numpy(), np.float32), np.array(b.numpy(), np.float32)


class LinearBn1d(Float.LinearBn1d, _LinearBnQAT):
    """QAT ``LinearBn1d``."""

    def forward(self, inp: Tensor) -> Tensor:
        return self.apply_quant_activation(self.calc_linear_bn_qat(inp))


class LinearBnRelu1d(Float.LinearBnRelu1d, _LinearBnQAT):
    """QAT ``LinearBnRelu1d``."""

    def forward(self, inp: Tensor) -> Tensor:
        return self.apply_quant_activation(F.relu(self.calc_linear_bn_qat(inp)))
