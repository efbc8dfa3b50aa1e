"""``QuantizedTensor``: the activations that flow between the layers of a Q model.

Integer data (int8 or uint8 storage) plus one float32 scale and an integer zero point:
``real = scale * (data - zero_point)``. 4-D tensors are stored **NHWC** (the kernels' layout)
while ``shape`` reports the logical NCHW shape, as the float model sees it. Values are clamped to
``[qmin, qmax]`` of their quantized dtype (e.g. [-8, 7] for qint4 stored in int8).

``backend`` says who computes the weightless ops applied to it (pooling, flatten, add, ...):
"kernels" (megq's C++ int8 kernels, in the Q model) or "reference" (megq.reference's numpy
emulation of the same contract, in the QFloat model's exact eval path). Both give identical bits.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np


class QuantizedTensor:
    """Quantized activations of a Q model (see the module docstring)."""

    __slots__ = ("data", "scale", "zero_point", "qmin", "qmax", "backend")

    def __init__(self, data: np.ndarray, scale: float, zero_point: int, qmin: int, qmax: int,
                 backend: str = "kernels") -> None:
        if not isinstance(data, np.ndarray) or data.dtype not in (np.int8, np.uint8):
            raise TypeError(f"data: expected an int8 or uint8 numpy array, got {getattr(data, 'dtype', type(data))}")
        if backend not in ("kernels", "reference"):
            raise ValueError(f"backend: expected 'kernels' or 'reference', got {backend!r}")
        self.data = data
        self.scale = np.float32(scale)
        self.zero_point = int(zero_point)
        self.qmin, self.qmax = int(qmin), int(qmax)
        self.backend = backend

    @property
    def dtype(self) -> str:
        """Storage dtype name: "int8" or "uint8"."""
        return self.data.dtype.name

    @property
    def shape(self) -> Tuple[int, ...]:
        """Logical shape (NCHW for 4-D data stored NHWC)."""
        s = self.data.shape
        return (s[0], s[3], s[1], s[2]) if self.data.ndim == 4 else s

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def like(self, data: np.ndarray) -> "QuantizedTensor":
        """A tensor with the same quantization parameters and backend and new data."""
        return QuantizedTensor(data, self.scale, self.zero_point, self.qmin, self.qmax, self.backend)

    def int_repr_nchw(self) -> np.ndarray:
        """The integer values in the logical (NCHW) layout."""
        return self.data.transpose(0, 3, 1, 2) if self.data.ndim == 4 else self.data

    def dequantize(self) -> np.ndarray:
        """float32 values ``scale * (q - zero_point)`` in the logical layout (NCHW for 4-D)."""
        x = (self.int_repr_nchw().astype(np.int32) - self.zero_point).astype(np.float32) * self.scale
        return np.ascontiguousarray(x)

    def numpy(self) -> np.ndarray:
        """Same as :meth:`dequantize`."""
        return self.dequantize()

    def __repr__(self) -> str:
        return (f"QuantizedTensor(shape={self.shape}, dtype={self.dtype}, scale={float(self.scale):.6g}, "
                f"zero_point={self.zero_point}, range=[{self.qmin}, {self.qmax}], backend={self.backend})")
