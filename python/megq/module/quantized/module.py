"""Base class of the Q model's modules: inference only, int8 kernels only."""
from __future__ import annotations

from typing import Any

from ...functional.quantized import expect_quantized
from ..module import Module

__all__ = ["QuantizedModule", "expect_quantized"]


class QuantizedModule(Module):
    """A module of a Q model. Calling it in training mode raises ValueError (as in MegEngine): call
    ``model.eval()`` after ``quantize(model)``. Layers take and return :class:`~megq.qtensor.QuantizedTensor`
    (except QuantStub, which takes float, and DequantStub, which returns float).

    Every subclass implements :meth:`from_qat_module`, which ``megq.quantization.quantize`` calls to build it.
    """

    @classmethod
    def from_qat_module(cls, qat_module: Any) -> "QuantizedModule":
        """The quantized module for a calibrated or trained QAT module of the same name (``qat.Conv2d`` ->
        ``quantized.Conv2d``): weights quantized to int8 now, activation qparams taken from its observers.

        Raises:
            ValueError: ``qat_module`` has no scale yet, or a dtype or mode megq's int8 kernels do not support.
        """
        raise NotImplementedError(f"{cls.__name__} must implement from_qat_module")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.training:
            raise ValueError(f"{type(self).__name__}: quantized modules only support inference; call "
                             f"model.eval() after quantize()")
        return super().__call__(*args, **kwargs)
