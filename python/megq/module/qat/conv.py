"""QAT Conv2d and ConvRelu2d: fake-quantized weight, qint32 fake-quantized bias, fake-quantized output."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ... import functional as F
from ...tensor import Tensor
from .. import conv as Float
from .module import QATModule

__all__ = ["Conv2d", "ConvRelu2d", "ConvRelu62d"]


class _ConvQAT(QATModule):
    def _weight_channels(self) -> Optional[int]:
        return self.out_channels

    def calc_conv_qat(self, inp: Tensor) -> Tensor:
        """``conv(inp, fq(W), fq_bias(b))`` (MegEngine's ``qat/conv.py``)."""
        self._check_input(inp)
        w_qat = self.apply_quant_weight(self.weight)
        b_qat = self.apply_quant_bias(self.bias, inp, w_qat)
        return self.calc_conv(inp, w_qat, b_qat)

    def folded_weight_and_bias(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(weight, bias) as float32 numpy arrays (copies); bias None if the conv has none."""
        w = np.array(self.weight.numpy(), np.float32)
        b = None if self.bias is None else np.array(self.bias.numpy(), np.float32)
        return w, b


class Conv2d(Float.Conv2d, _ConvQAT):
    """QAT ``Conv2d``: ``fq_act(conv(x, fq_w(W), fq_b(b)))``."""

    def forward(self, inp: Tensor) -> Tensor:
        return self.apply_quant_activation(self.calc_conv_qat(inp))


class ConvRelu2d(Float.ConvRelu2d, _ConvQAT):
    """QAT ``ConvRelu2d``: ``fq_act(relu(conv(x, fq_w(W), fq_b(b))))``."""

    def forward(self, inp: Tensor) -> Tensor:
        return self.apply_quant_activation(F.relu(self.calc_conv_qat(inp)))


class ConvRelu62d(Float.ConvRelu62d, _ConvQAT):
    """QAT ``ConvRelu62d``: ``fq_act(relu6(conv(x, fq_w(W), fq_b(b))))``."""

    def forward(self, inp: Tensor) -> Tensor:
        return self.apply_quant_activation(F.relu6(self.calc_conv_qat(inp)))
