"""Batch normalization with backward (train: batch statistics + running-stat update; eval: running stats)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..tensor import Tensor, make_result
from ._parallel import parallel_rows
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
        # Row blocks on the thread pool: block sums, then centring + block sums of squares (two-pass variance).
        ones = np.ones(m, dt)  # column sums as matrix-vector products (much faster than ndarray.sum(axis=0))
        mean = sum(parallel_rows(lambda lo, hi: ones[lo:hi] @ rows[lo:hi], m, rows.size)) / m
        xc = np.empty_like(rows)

        def centre(lo: int, hi: int) -> np.ndarray:
            np.subtract(rows[lo:hi], mean, out=xc[lo:hi])
            return np.einsum("ij,ij->j", xc[lo:hi], xc[lo:hi])

        var = sum(parallel_rows(centre, m, rows.size)) / m
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
    src = xc if xc is not None else rows
    shift = (np.zeros(c, dt) if beta is None else beta) - (0 if xc is not None else mean * scale)
    out = np.empty_like(rows)

    def affine(lo: int, hi: int) -> None:
        np.multiply(src[lo:hi], scale, out=out[lo:hi])
        out[lo:hi] += shift

    parallel_rows(affine, m, rows.size)
    out_nd = out if x.ndim == 2 else rows_to_nchw(out, x.shape)

    def backward(g: np.ndarray):
        gr = _rows(g)
        xcen = xc if xc is not None else rows - mean

        ones = np.ones(m, gr.dtype)

        def sums(lo: int, hi: int):
            return ones[lo:hi] @ gr[lo:hi], np.einsum("ij,ij->j", gr[lo:hi], xcen[lo:hi])

        parts = parallel_rows(sums, m, 2 * gr.size)
        gsum = sum(p[0] for p in parts)
        gxc = sum(p[1] for p in parts)  # sum(g * (x - mean))
        ggamma = None if gamma is None else (gxc * istd).reshape(data(weight).shape)
        gbeta = None if beta is None else gsum.reshape(data(bias).shape)
        gx = np.empty_like(gr)
        if training:
            # d/dx of (x - mean(x)) * istd(x) * scale: batch statistics depend on x
            k1 = -scale * istd * istd * gxc / m
            k0 = -scale * gsum / m

            def grad_rows(lo: int, hi: int) -> None:
                np.multiply(xcen[lo:hi], k1, out=gx[lo:hi])
                gx[lo:hi] += gr[lo:hi] * scale
                gx[lo:hi] += k0
        else:
            def grad_rows(lo: int, hi: int) -> None:
                np.multiply(gr[lo:hi], scale, out=gx[lo:hi])

        parallel_rows(grad_rows, m, 2 * gr.size)
        gx_nd = gx if x.ndim == 2 else rows_to_nchw(gx, x.shape)
        return gx_nd, None, None, ggamma, gbeta

    return make_result(out_nd, (inp, running_mean, running_var, weight, bias), backward)
