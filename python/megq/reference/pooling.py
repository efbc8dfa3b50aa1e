"""NHWC pooling contract (csrc/megq/pooling.h), in numpy.

max: integer max over the window's input taps (padding never wins).
average: ``round_half_away(float32(sum) / float32(count))`` with ``sum`` the int32 sum of raw q
over the input taps; "average_count_exclude_padding" counts the input taps only, "average"
counts ``kh * kw`` and lets each padding tap add the zero point.
"""
from __future__ import annotations

import numpy as np

from .rounding import round_half_away_from_zero


def _axis(size, k, s, p, d):
    eff = (k - 1) * d + 1
    out = (size + 2 * p - eff) // s + 1
    idx = np.arange(out)[:, None] * s - p + np.arange(k)[None, :] * d  # (out, k) input index per tap
    return out, idx, (idx >= 0) & (idx < size)


def pool2d(x: np.ndarray, kernel_size, stride, padding=(0, 0), dilation=(1, 1), mode="max",
           zero_point: int = 0) -> np.ndarray:
    N, H, W, C = x.shape
    OH, ih, vh = _axis(H, kernel_size[0], stride[0], padding[0], dilation[0])
    OW, iw, vw = _axis(W, kernel_size[1], stride[1], padding[1], dilation[1])
    xi = x.astype(np.int32)
    # gather (N, OH, kh, OW, kw, C) with clipped indices, then mask padding taps
    g = xi[:, np.clip(ih, 0, H - 1)][:, :, :, np.clip(iw, 0, W - 1)]
    valid = (vh[:, :, None, None] & vw[None, None, :, :])[None, :, :, :, :, None]
    if mode == "max":
        return np.where(valid, g, np.iinfo(np.int32).min).max(axis=(2, 4)).astype(x.dtype)
    s = np.where(valid, g, 0).sum(axis=(2, 4), dtype=np.int32)
    n_valid = valid.sum(axis=(2, 4), dtype=np.int32)
    if mode == "average":
        count = np.int32(kernel_size[0] * kernel_size[1])
        s = s + (count - n_valid) * np.int32(zero_point)
    elif mode == "average_count_exclude_padding":
        count = n_valid
    else:
        raise ValueError(f"mode: unknown {mode!r}")
    v = s.astype(np.float32) / np.asarray(count).astype(np.float32)
    return round_half_away_from_zero(v).astype(np.int32).astype(x.dtype)


def global_avg_pool2d(x: np.ndarray) -> np.ndarray:
    N, H, W, C = x.shape
    s = x.astype(np.int32).sum(axis=(1, 2), dtype=np.int32)
    v = s.astype(np.float32) / np.float32(H * W)
    return round_half_away_from_zero(v).astype(np.int32).astype(x.dtype).reshape(N, 1, 1, C)
