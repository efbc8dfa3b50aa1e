"""QuantStub (float NCHW -> QuantizedTensor NHWC) and DequantStub (back to float) of a Q model."""
from __future__ import annotations

from typing import Any

import numpy as np

from ...functional.quantized import traced
from ...qtensor import QuantizedTensor
from ...quantization.integer_layer import act_qparams
from ...tensor import Tensor
from .module import QuantizedModule, expect_quantized


class QuantStub(QuantizedModule):
    """Quantizes a float input with the scale and zero point learned by the QFloat model:
    ``q = clamp(round_half_away(x / s) + z, qmin, qmax)``, fused with the NCHW -> NHWC change."""

    def __init__(self, scale: np.float32, zero_point: int, qmin: int, qmax: int, dtype: str) -> None:
        super().__init__()
        self.scale, self.zero_point, self.qmin, self.qmax, self.dtype = np.float32(scale), zero_point, qmin, qmax, dtype

    @classmethod
    def from_qat_module(cls, qat_module: Any) -> "QuantStub":
        s, z, qmin, qmax, dtype = act_qparams(qat_module.get_activation_qparams(), type(qat_module).__name__)
        return cls(s, z, qmin, qmax, dtype)

    @traced("quant_stub")
    def forward(self, x: Any) -> QuantizedTensor:
        from ... import kernels

        data = np.asarray(x.numpy() if isinstance(x, Tensor) else x, dtype=np.float32)
        q = kernels.quantize(data, self.scale, self.zero_point, self.dtype)
        if (self.qmin, self.qmax) != ((-128, 127) if self.dtype == "int8" else (0, 255)):
            np.clip(q, self.qmin, self.qmax, out=q)  # narrower dtypes (qint4, ...) stored in 8 bits
        return QuantizedTensor(q, self.scale, self.zero_point, self.qmin, self.qmax, "kernels")


class DequantStub(QuantizedModule):
    """Returns float32 ``Tensor`` values ``s * (q - z)`` in the logical (NCHW) layout."""

    @classmethod
    def from_qat_module(cls, qat_module: Any) -> "DequantStub":
        return cls()

    @traced("dequant_stub")
    def forward(self, x: Any) -> Tensor:
        from ... import kernels

        x = expect_quantized(x, type(self).__name__)
        return Tensor(kernels.dequantize(x.data, x.scale, x.zero_point))
