"""Base class of the Q model's modules: inference only, int8 kernels only."""
from __future__ import annotations

from typing import Any

from ...qtensor import QuantizedTensor
from ..module import Module


class QuantizedModule(Module):
    """A module of a Q model. Calling it in training mode raises ValueError (as in MegEngine): call
    ``model.eval()`` after ``quantize(model)``. Layers take and return :class:`QuantizedTensor`
    (except QuantStub, which takes float, and DequantStub, which returns float)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.training:
            raise ValueError(f"{type(self).__name__}: quantized modules only support inference; call "
                             f"model.eval() after quantize()")
        return super().__call__(*args, **kwargs)


def expect_quantized(x: Any, owner: str) -> QuantizedTensor:
    """``x`` as a QuantizedTensor, or a TypeError that says how to fix the model."""
    if not isinstance(x, QuantizedTensor):
        raise TypeError(f"{owner}: expected a QuantizedTensor input, got {type(x).__name__}; a QuantStub must "
                        f"quantize the float input before the first quantized layer")
    return x
