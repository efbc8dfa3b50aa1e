"""QuantStub / DequantStub: identity in float; the quantization layer maps them to (fake) quantize / dequantize."""
from __future__ import annotations

from typing import Any

from .module import Module

__all__ = ["QuantStub", "DequantStub"]


class QuantStub(Module):
    """Marks where a model's float input becomes quantized. Identity in a float model."""

    def forward(self, x: Any) -> Any:
        return x


class DequantStub(Module):
    """Marks where quantized values return to float. Identity in a float model."""

    def forward(self, x: Any) -> Any:
        return x
