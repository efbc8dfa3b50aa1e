"""Batch normalization with backward (train: batch statistics + running-stat update; eval: running stats)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..tensor import Tensor, make_result
from ._utils import data, nchw_rows, rows_to_nchw

__all__ = ["batch_norm"]


def _rows(x: np.ndarray) -> np.ndarray:
    if x.ndim == 2:
        return x
    if x.ndim == 4:
        return nchw_rows(x)
    raise ValueError(f"batch_norm: inp must be 2-D (N, C) or 4-D (N, C, H, W), got shape {x.shape}")


def batch_norm(inp: Any, running_mean: Optional[Tensor] = None, running_var: Optional[Tensor] = None,
               weight: Any = None, bias: Any = None, *, training: bool = False, momentum: float = 0.9,
               eps: float = 1e-5, inplace: bool = True) -> Tensor:
    """Normalize over every axis but 1 (channels).

    ``training=True`` uses batch statistics and, if ``inplace``, updates ``running_mean``/``running_var`` in place
    with MegEngine's convention ``running = momentum * running + (1 - momentum) * batch`` (unbiased batch var).
    ``training=False`` uses the running statistics, which must then be given.
    """
    x = data(inp)
    rows = _rows(x)
    m, c = rows.shape
    gamma = None if weight is None else data(weight).reshape(c)
    beta = None if bias is None else data(bias).reshape(c)
    dt = x.dtype
    if training:
        if m < 2:
            raise ValueError(f"batch_norm: training needs more than one value per channel, got inp shape {x.shape}")
        ones = np.ones(m, dt)
        mean = ones @ rows / m
        xc = rows - mean
        var = np.einsum("ij,ij->j", xc, xc) / m
        if inplace and running_mean is not None and running_var is not None:
            rm, rv = running_mean._data, running_var._data
            rm[...] = (momentum * rm.reshape(c) + (1 - momentum) * mean).reshape(rm.shape)
            rv[...] = (momentum * rv.reshape(c) + (1 - momentum) * var * (m / (m - 1))).reshape(rv.shape)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are required when training=False")
        mean = data(running_mean).reshape(c).astype(dt, copy=False)
        var = data(running_var).reshape(c).astype(dt, copy=False)
        xc = None
    istd = (1.0 / np.sqrt(var + eps)).astype(dt, copy=False)
    scale = istd if gamma is None else gamma * istd
    if xc is not None:
        out = xc * scale
        if beta is not None:
            out += beta
    else:
        shift = -mean * scale if beta is None else beta - mean * scale
        out = rows * scale + shift
    out_nd = out if x.ndim == 2 else rows_to_nchw(out, x.shape)

    def backward(g: np.ndarray):
        gr = _rows(g)
        ones_g = np.ones(m, gr.dtype)
        gsum = ones_g @ gr
        xcen = xc if xc is not None else rows - mean
        gxc = np.einsum("ij,ij->j", gr, xcen)  # sum(g * (x - mean))
        ggamma = None if gamma is None else (gxc * istd).reshape(data(weight).shape)
        gbeta = None if beta is None else gsum.reshape(data(bias).shape)
        if training:
            # d/dx of (x - mean(x)) * istd(x) * scale, batch statistics depend on x
            k1 = -scale * istd * istd * gxc / m
            gx = xcen * k1
            gx += gr * scale
            gx -= scale * gsum / m
        else:
            gx = gr * scale
        if x.ndim == 4:
            gx = rows_to_nchw(gx, x.shape)
        return gx, None, None, ggamma, gbeta

    return make_result(out_nd, (inp, running_mean, running_var, weight, bias), backward)
