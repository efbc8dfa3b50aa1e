"""Max / average / adaptive-average pooling on NCHW (windows taken on an NHWC view)."""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..qtensor import QuantizedTensor
from ..tensor import Tensor, make_result
from . import quantized as QF
from ._utils import check_rank, data, pair
from .conv import _col2im

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"]


def _geometry(x: np.ndarray, kernel_size: Any, stride: Any, padding: Any, op: str):
    check_rank(x, 4, op, "inp")
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(kernel_size if stride is None else stride, "stride")
    ph, pw = pair(padding, "padding")
    if kh == 0 or kw == 0 or sh == 0 or sw == 0:
        raise ValueError(f"{op}: kernel_size and stride must be positive")
    if ph * 2 > kh or pw * 2 > kw:
        raise ValueError(f"{op}: padding {padding} must be at most half of kernel_size {kernel_size}")
    n, c, h, w = x.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"{op}: kernel_size {kernel_size} larger than padded input {h}x{w}")
    return kh, kw, sh, sw, ph, pw, ho, wo


def _windows(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int, ho: int, wo: int) -> np.ndarray:
    n, _, _, c = xp.shape
    s0, s1, s2, s3 = xp.strides
    return as_strided(xp, (n, ho, wo, kh, kw, c), (s0, s1 * sh, s2 * sw, s1, s2, s3), writeable=False)


def _padded(xh: np.ndarray, ph: int, pw: int, value: float) -> np.ndarray:
    if ph == 0 and pw == 0:
        return xh
    n, h, w, c = xh.shape
    xp = np.full((n, h + 2 * ph, w + 2 * pw, c), value, xh.dtype)
    xp[:, ph:ph + h, pw:pw + w] = xh
    return xp


def max_pool2d(inp: Any, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """Max over ``kernel_size`` windows (stride defaults to ``kernel_size``; padding counts as -inf)."""
    if isinstance(inp, QuantizedTensor):  # int8 path of Q models and exact QFloat eval
        return QF.max_pool2d(inp, kernel_size, stride, padding)

    x = data(inp)
    kh, kw, sh, sw, ph, pw, ho, wo = _geometry(x, kernel_size, stride, padding, "max_pool2d")
    n, c, h, w = x.shape
    win = _windows(_padded(x.transpose(0, 2, 3, 1), ph, pw, -np.inf), kh, kw, sh, sw, ho, wo)
    patches = win.reshape(n, ho, wo, kh * kw, c)
    idx = patches.argmax(axis=3)
    out = np.take_along_axis(patches, idx[:, :, :, None], axis=3)[:, :, :, 0]

    def backward(g: np.ndarray):
        gh = g.transpose(0, 2, 3, 1)
        dcol = (np.arange(kh * kw)[None, None, None, :, None] == idx[:, :, :, None, :]) * gh[:, :, :, None, :]
        gx = _col2im(dcol.astype(g.dtype, copy=False), (n, h, w, c), kh, kw, sh, sw, 1, 1, ph, pw, ho, wo)
        return (gx.transpose(0, 3, 1, 2),)

    return make_result(out.transpose(0, 3, 1, 2), (inp,), backward)


def avg_pool2d(inp: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
               mode: str = "average_count_exclude_padding") -> Tensor:
    """Mean over windows. ``mode``: "average_count_exclude_padding" (MegEngine's default) divides by the number
    of real pixels in the window, "average" by the full window size."""
    if isinstance(inp, QuantizedTensor):  # int8 path of Q models and exact QFloat eval
        return QF.avg_pool2d(inp, kernel_size, stride, padding, mode)

    if mode not in ("average_count_exclude_padding", "average"):
        raise ValueError(f"avg_pool2d: mode must be 'average_count_exclude_padding' or 'average', got {mode!r}")
    x = data(inp)
    kh, kw, sh, sw, ph, pw, ho, wo = _geometry(x, kernel_size, stride, padding, "avg_pool2d")
    n, c, h, w = x.shape
    win = _windows(_padded(x.transpose(0, 2, 3, 1), ph, pw, 0.0), kh, kw, sh, sw, ho, wo)
    total = win.sum(axis=(3, 4))
    if mode == "average" or (ph == 0 and pw == 0):
        count = np.full((1, ho, wo, 1), kh * kw, x.dtype)
    else:
        ones = _padded(np.ones((1, h, w, 1), x.dtype), ph, pw, 0.0)
        count = _windows(ones, kh, kw, sh, sw, ho, wo).sum(axis=(3, 4))
    out = total / count

    def backward(g: np.ndarray):
        gq = g.transpose(0, 2, 3, 1) / count
        dcol = np.broadcast_to(gq[:, :, :, None, :], (n, ho, wo, kh * kw, c))
        gx = _col2im(dcol, (n, h, w, c), kh, kw, sh, sw, 1, 1, ph, pw, ho, wo)
        return (gx.transpose(0, 3, 1, 2),)

    return make_result(out.transpose(0, 3, 1, 2), (inp,), backward)


def _bins(size: int, out: int) -> list:
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def adaptive_avg_pool2d(inp: Any, oshp: Any) -> Tensor:
    """Average pooling to output size ``oshp`` (int or pair), bins as in PyTorch/MegEngine."""
    if isinstance(inp, QuantizedTensor):  # int8 path of Q models and exact QFloat eval
        return QF.adaptive_avg_pool2d(inp, oshp)

    x = data(inp)
    check_rank(x, 4, "adaptive_avg_pool2d", "inp")
    oh, ow = pair(oshp, "oshp")
    if oh == 0 or ow == 0:
        raise ValueError("adaptive_avg_pool2d: oshp must be positive")
    n, c, h, w = x.shape
    if h % oh == 0 and w % ow == 0:
        return avg_pool2d(inp, (h // oh, w // ow))
    rows, cols = _bins(h, oh), _bins(w, ow)
    out = np.empty((n, c, oh, ow), x.dtype)
    for i, (a, b) in enumerate(rows):
        for j, (p, q) in enumerate(cols):
            out[:, :, i, j] = x[:, :, a:b, p:q].mean(axis=(2, 3))

    def backward(g: np.ndarray):
        gx = np.zeros(x.shape, g.dtype)
        for i, (a, b) in enumerate(rows):
            for j, (p, q) in enumerate(cols):
                gx[:, :, a:b, p:q] += g[:, :, i:i + 1, j:j + 1] / ((b - a) * (q - p))
        return (gx,)

    return make_result(out, (inp,), backward)
