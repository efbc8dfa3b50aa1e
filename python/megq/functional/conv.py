"""2-D convolution (cross-correlation, NCHW interface) on numpy: im2col on strided views + one matmul.

Internally activations are NHWC: the output is an NCHW-shaped *view* of an NHWC buffer, so the next conv's
``x.transpose(0, 2, 3, 1)`` is free and element-wise ops (BN, ReLU, add) keep that layout. Callers never see
the difference except through ``ndarray.strides``.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..tensor import Tensor, make_result, needs_grad
from ._parallel import parallel_copy
from ._utils import check_rank, data, pair

__all__ = ["conv2d"]


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _pad_nhwc(xh: np.ndarray, ph: int, pw: int) -> np.ndarray:
    if ph == 0 and pw == 0:
        return xh
    n, h, w, c = xh.shape
    xp = np.zeros((n, h + 2 * ph, w + 2 * pw, c), xh.dtype)
    xp[:, ph:ph + h, pw:pw + w] = xh
    return xp


def _im2col(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, ho: int, wo: int) -> np.ndarray:
    """(N*Ho*Wo, KH*KW*C) patch matrix of a padded NHWC array; a single copy from a strided view."""
    n, _, _, c = xp.shape
    if kh == 1 and kw == 1 and sh == 1 and sw == 1:
        return np.ascontiguousarray(xp).reshape(n * ho * wo, c)
    s0, s1, s2, s3 = xp.strides
    view = as_strided(xp, (n, ho, wo, kh, kw, c), (s0, s1 * sh, s2 * sw, s1 * dh, s2 * dw, s3), writeable=False)
    col = np.empty((n, ho, wo, kh, kw, c), xp.dtype)
    parallel_copy(col, view)
    return col.reshape(n * ho * wo, kh * kw * c)


def _col2im(dcol: np.ndarray, shape: Tuple[int, int, int, int], kh: int, kw: int, sh: int, sw: int, dh: int, dw: int,
            ph: int, pw: int, ho: int, wo: int) -> np.ndarray:
    """Scatter-add patch gradients back to an NHWC image (one vectorised add per kernel tap)."""
    n, h, w, c = shape
    dxp = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dcol.dtype)
    d6 = dcol.reshape(n, ho, wo, kh, kw, c)
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dh, j * dw
            dxp[:, y0:y0 + sh * (ho - 1) + 1:sh, x0:x0 + sw * (wo - 1) + 1:sw] += d6[:, :, :, i, j]
    return dxp[:, ph:ph + h, pw:pw + w]


def _check(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray], groups: int) -> None:
    check_rank(x, 4, "conv2d", "inp")
    check_rank(w, 4, "conv2d", "weight")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    o, cg = w.shape[:2]
    if x.shape[1] != cg * groups:
        raise ValueError(f"conv2d: inp has {x.shape[1]} channels but weight expects {cg * groups} "
                         f"(weight shape {w.shape}, groups={groups})")
    if o % groups:
        raise ValueError(f"conv2d: out channels {o} not divisible by groups={groups}")
    if b is not None and b.size != o:
        raise ValueError(f"conv2d: bias has {b.size} elements, expected {o}")


def conv2d(inp: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
           groups: int = 1) -> Tensor:
    """Cross-correlation of ``inp`` (N, C, H, W) with ``weight`` (O, C/groups, KH, KW) plus ``bias`` (O,).

    Returns (N, O, Ho, Wo). ``stride``, ``padding`` and ``dilation`` are ints or pairs; zero padding.
    """
    x, w = data(inp), data(weight)
    b = None if bias is None else data(bias)
    _check(x, w, b, groups)
    sh, sw = pair(stride, "stride")
    ph, pw = pair(padding, "padding")
    dh, dw = pair(dilation, "dilation")
    if sh == 0 or sw == 0 or dh == 0 or dw == 0:
        raise ValueError("conv2d: stride and dilation must be positive")
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho, wo = _out_size(h, kh, sh, ph, dh), _out_size(wd, kw, sw, pw, dw)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"conv2d: kernel {kh}x{kw} larger than padded input {h + 2 * ph}x{wd + 2 * pw}")
    xh = x.transpose(0, 2, 3, 1)
    col = _im2col(_pad_nhwc(xh, ph, pw), kh, kw, sh, sw, dh, dw, ho, wo)
    m, kk, og = n * ho * wo, kh * kw, o // groups
    depthwise = groups > 1 and cg == 1 and og == 1
    if groups == 1:
        wmat = w.transpose(2, 3, 1, 0).reshape(kk * c, o)
        out = col @ wmat
    elif depthwise:
        wdw = w.reshape(o, kk).T  # (KK, C)
        col3 = col.reshape(m, kk, c)
        out = col3[:, 0] * wdw[0]
        for k in range(1, kk):
            out += col3[:, k] * wdw[k]
    else:
        colg = col.reshape(m, kk, groups, cg).transpose(2, 0, 1, 3).reshape(groups, m, kk * cg)
        wg = w.reshape(groups, og, cg, kh, kw).transpose(0, 3, 4, 2, 1).reshape(groups, kk * cg, og)
        out = (colg @ wg).transpose(1, 0, 2).reshape(m, o)
    if b is not None:
        out += b.reshape(o)
    result = out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)
    x_needs = needs_grad(inp)
    geom = (kh, kw, sh, sw, dh, dw, ph, pw, ho, wo)

    def backward(g: np.ndarray):
        gr = np.ascontiguousarray(g.transpose(0, 2, 3, 1)).reshape(m, o)
        gb = None if b is None else (np.ones(m, gr.dtype) @ gr).reshape(b.shape)
        gx = None
        if groups == 1:
            gw = (col.T @ gr).reshape(kh, kw, c, o).transpose(3, 2, 0, 1)
            if x_needs:
                gx = _grad_input_dense(gr, w, (n, h, wd, c), geom)
        elif depthwise:
            g3 = col.reshape(m, kk, c)
            gw = np.einsum("mkc,mc->ck", g3, gr).reshape(w.shape)
            if x_needs:
                dcol = gr[:, None, :] * w.reshape(o, kk).T[None]
                gx = _col2im(dcol, (n, h, wd, c), *geom)
        else:
            grg = gr.reshape(m, groups, og).transpose(1, 0, 2)
            colg = col.reshape(m, kk, groups, cg).transpose(2, 0, 1, 3).reshape(groups, m, kk * cg)
            wg = w.reshape(groups, og, cg, kh, kw).transpose(0, 3, 4, 2, 1).reshape(groups, kk * cg, og)
            gw = (colg.transpose(0, 2, 1) @ grg).reshape(groups, kh, kw, cg, og)
            gw = gw.transpose(0, 4, 3, 1, 2).reshape(w.shape)
            if x_needs:
                dcol = (grg @ wg.transpose(0, 2, 1)).reshape(groups, m, kk, cg).transpose(1, 2, 0, 3)
                gx = _col2im(np.ascontiguousarray(dcol), (n, h, wd, c), *geom)
        if gx is not None:
            gx = gx.transpose(0, 3, 1, 2)
        return gx, np.ascontiguousarray(gw), gb

    return make_result(result, (inp, weight, bias), backward)


def _grad_input_dense(gr: np.ndarray, w: np.ndarray, shape: Tuple[int, int, int, int], geom: tuple) -> np.ndarray:
    """Input gradient (NHWC) of a groups=1 conv.

    Stride 1 with ``padding <= dilation*(k-1)``: a correlation of the zero-padded output gradient with the
    spatially flipped kernel (im2col + matmul; much cheaper than a col2im scatter). Otherwise: matmul + col2im.
    """
    kh, kw, sh, sw, dh, dw, ph, pw, ho, wo = geom
    n, h, wd, c = shape
    o = w.shape[0]
    if kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0:
        return (gr @ w.reshape(o, c)).reshape(n, h, wd, c)
    qh, qw = dh * (kh - 1) - ph, dw * (kw - 1) - pw
    if sh == 1 and sw == 1 and qh >= 0 and qw >= 0:
        gcol = _im2col(_pad_nhwc(gr.reshape(n, ho, wo, o), qh, qw), kh, kw, 1, 1, dh, dw, h, wd)
        wflip = w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(kh * kw * o, c)
        return (gcol @ np.ascontiguousarray(wflip)).reshape(n, h, wd, c)
    dcol = gr @ w.transpose(0, 2, 3, 1).reshape(o, kh * kw * c)
    return _col2im(dcol, shape, *geom)
