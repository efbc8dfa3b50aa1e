"""QAT ConvBn2d / ConvBnRelu2d with MegEngine's BN folding
(``imperative/python/megengine/module/qat/conv_bn.py`` in https://github.com/MegEngine/MegEngine).

Training: ``W_fold = W·γ/sqrt(σ²_r+ε)`` (running variance) is fake-quantized and convolved without bias; the output
is divided by ``k = γ/sqrt(σ²_r+ε)``, the conv bias is added, and the real BatchNorm runs on it with batch statistics
(updating the running statistics). Eval: the BN is folded with the running statistics into weight and bias
(``b_fold = β + γ·(b_c - μ_r)/sqrt(σ²_r+ε)``), both fake-quantized, and the BN module is not run.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ... import functional as F
from ...tensor import Tensor
from .. import conv_bn as Float
from ._bn_fold import check_bn, fold_bn
from .module import QATModule

__all__ = ["ConvBn2d", "ConvBnRelu2d", "ConvBnRelu62d"]


class _ConvBnQAT(QATModule):
    def _check_float_module(self, float_module) -> None:
        check_bn(type(self).__name__, self.bn)

    def _weight_channels(self) -> Optional[int]:
        return self.conv.out_channels

    def fold_weight_bias(self, training: bool):
        """Tensors ``(w_fold, b_fold, scale_factor)``; ``b_fold`` is None in the training (approx) path."""
        return fold_bn(self.conv.weight, self.conv.bias, self.bn, with_bias=not training)

    def calc_conv_bn_qat(self, inp: Tensor) -> Tensor:
        self.conv._check_input(inp)
        training = self.training
        w_fold, b_fold, k = self.fold_weight_bias(training)
        w_qat = self.apply_quant_weight(w_fold)
        b_qat = self.apply_quant_bias(b_fold, inp, w_qat)
        y = self.conv.calc_conv(inp, w_qat, b_qat)
        if not training:
            return y
        y = y / k.reshape(1, -1, 1, 1)
        if self.conv.bias is not None:
            y = y + self.conv.bias.reshape(1, -1, 1, 1)
        return self.bn(y)

    def folded_weight_and_bias(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Eval-mode folded (weight, bias), float32 numpy, exactly as the eval forward computes them."""
        w, b, _ = self.fold_weight_bias(training=False)
        return np.array(w.numpy(), np.float32), np.array(b.numpy(), np.float32)


class ConvBn2d(Float.ConvBn2d, _ConvBnQAT):
    """QAT ``ConvBn2d``: ``fq_act(conv_bn_folded(x))``."""

    def forward(self, inp: Tensor) -> Tensor:
        return self.apply_quant_activation(self.calc_conv_bn_qat(inp))


class ConvBnRelu2d(Float.ConvBnRelu2d, _ConvBnQAT):
    """QAT ``ConvBnRelu2d``: ``fq_act(relu(conv_bn_folded(x)))``."""

    def forward(self, inp: Tensor) -> Tensor:
        return self.apply_quant_activation(F.relu(self.calc_conv_bn_qat(inp)))


class ConvBnRelu62d(Float.ConvBnRelu62d, _ConvBnQAT):
    """QAT ``ConvBnRelu62d``: ``fq_act(relu6(conv_bn_folded(x)))``."""

    def forward(self, inp: Tensor) -> Tensor:
        return self.apply_quant_activation(F.relu6(self.calc_conv_bn_qat(inp)))
