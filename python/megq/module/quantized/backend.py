"""Which implementation runs an int8 op: megq's C++ kernels (Q model) or their numpy twins in
megq.reference (the QFloat model's exact eval path). Both implement one contract bit for bit."""
from __future__ import annotations

from types import ModuleType


def library(backend: str) -> ModuleType:
    """``megq.kernels`` for "kernels", ``megq.reference`` for "reference"."""
    if backend == "kernels":
        from ... import kernels

        return kernels
    from ... import reference

    return reference


def requantize(backend: str, q, in_scale, in_zero_point: int, out_scale, out_zero_point: int, out_dtype: str):
    """int8/uint8 -> int8/uint8 between two quantizations (same layout)."""
    if backend == "kernels":
        from ... import kernels

        return kernels.requantize(q, in_scale, in_zero_point, out_scale, out_zero_point, out_dtype)
    from ...reference.quantize import requantize_tensor

    return requantize_tensor(q, in_scale, in_zero_point, out_scale, out_zero_point, out_dtype)


def pool2d(backend: str, q, kernel_size, stride, padding, mode: str, zero_point: int):
    """Max ("max") or average pooling of NHWC data; ``kernel_size``/``stride``/``padding`` are pairs."""
    if backend == "kernels":
        from ... import kernels

        if mode == "max":
            return kernels.max_pool2d(q, kernel_size, stride, padding)
        return kernels.avg_pool2d(q, kernel_size, stride, padding, mode=mode, zero_point=zero_point)
    from ...reference.pooling import pool2d as reference_pool2d

    return reference_pool2d(q, kernel_size, stride, padding, (1, 1), mode, zero_point)


def global_avg_pool2d(backend: str, q):
    """(N, H, W, C) -> (N, 1, 1, C) mean, rounded half away from zero."""
    n, _, _, c = q.shape
    return library(backend).global_avg_pool2d(q).reshape(n, 1, 1, c)
