"""Independent numpy oracles for histogram calibration (not megq code): entropy (KL) and MSE threshold searches.

``entropy_threshold_bin`` is TensorRT's entropy calibration as NVIDIA's pytorch-quantization writes it
(``_compute_amax_entropy``): on a histogram of magnitudes, for each candidate bin count ``i`` the reference P is the
first ``i`` bins with everything beyond added to the last one, Q merges the first ``i`` bins into ``levels`` levels
(``np.digitize`` over ``linspace(0, i, levels + 1)``) and spreads each level's count evenly over its non-empty bins;
the bins nearest 0 take the next bin's count (the zero spike), other point masses their local median inside the
range; the largest ``i`` minimising KL(P||Q) wins, among
candidates whose in-range counts fill at least two levels (megq's guard against clipping everything).

``mse_errors`` follows megq's documented MSE rule (``HistogramObserver`` docstring): candidate ranges
``r * [-amax, amax]`` for ``r`` in ``geomspace(2 / bins, 1, 200)`` (and 1), float32 scale ``amax_r / 127.5``
(MegEngine's qint8 divisor ``(qmax - qmin) / 2``), 4 sample points per non-empty bin at ``(k + 0.5) / 4`` of
its width, each carrying a quarter of the bin's count; error = sum of count * (x - fake_quant(x))^2.
"""
from __future__ import annotations

import math

import numpy as np


def entropy_threshold_bin(mag_hist: np.ndarray, levels: int, zero_bins: int = 1) -> tuple[int, np.ndarray]:
    """(best bin count ``i``, KL divergence per candidate ``i = levels .. len(mag_hist)``).

    ``zero_bins``: the first ``zero_bins`` bins take the count of bin ``zero_bins`` (pytorch-quantization: 1; megq
    documents 2 histogram bin widths, i.e. 2 magnitude bins for a histogram starting at 0, 4 for one over
    [-amax, amax])."""
    full = np.array(mag_hist, dtype=np.float64)
    full[:zero_bins] = full[zero_bins]
    n = len(full)
    # point masses (megq's rule): a bin above 16x the median of the 17 bins around it (fewer at the ends) and
    # holding >= 0.1 % of the mass takes that median in the in-range part; the clipped mass keeps it
    bins = full.copy()
    if n >= 17:
        total = full.sum()
        for b in range(n):
            med = float(np.median(full[max(0, b - 8):b + 9]))
            if full[b] > 16 * med and full[b] >= 1e-3 * total:
                bins[b] = med
    divergences = []
    for i in range(levels, n + 1):
        space = np.linspace(0, i, num=levels + 1)
        digitized = np.digitize(np.arange(i), space) - 1
        digitized[bins[:i] == 0] = -1
        kept = digitized != -1
        merged = np.zeros(levels)
        count = np.zeros(levels)
        np.add.at(merged, digitized[kept], bins[:i][kept])
        np.add.at(count, digitized[kept], 1)
        q = np.zeros(i)
        q[kept] = merged[digitized[kept]] / count[digitized[kept]]
        p = bins[:i].copy()
        p[-1] += full[i:].sum()
        if len(set(digitized[kept])) < 2:  # megq's rule: in-range mass in under two levels is no candidate
            divergences.append(math.inf)
            continue
        p = p / p.sum()
        q = q / q.sum()
        pos = p > 0
        divergences.append(math.inf if np.any(q[pos] == 0) else float(np.sum(p[pos] * np.log(p[pos] / q[pos]))))
    divergences = np.array(divergences)
    best = len(divergences) - 1 - int(np.argmin(divergences[::-1]))
    return levels + best, divergences


def fold_symmetric(hist: np.ndarray) -> np.ndarray:
    """Magnitude histogram (same bin count, over [0, amax]) of a signed histogram over [-amax, amax] with an even
    bin count, density uniform within a bin: magnitude bin j takes half of signed bins n/2 + j//2 and n/2-1-j//2."""
    n = len(hist)
    assert n % 2 == 0
    j = np.arange(n)
    return (np.asarray(hist, np.float64)[n // 2 + j // 2] + np.asarray(hist, np.float64)[n // 2 - 1 - j // 2]) / 2


def mse_candidates(bins: int, n: int = 200) -> np.ndarray:
    return np.unique(np.concatenate([np.geomspace(min(1.0, 2.0 / bins), 1.0, n), [1.0]]))


def mse_errors(hist: np.ndarray, hmin: float, hmax: float, qmin: int = -128, qmax: int = 127,
               eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """(float32 symmetric scale per candidate, expected squared error per candidate), in candidate order."""
    hist = np.asarray(hist, np.float64)
    width = (hmax - hmin) / len(hist)
    amax = max(abs(hmin), abs(hmax))
    scales, errors = [], []
    nonzero = np.nonzero(hist > 0)[0]
    pts = np.array([hmin + (b + (k + 0.5) / 4) * width for b in nonzero for k in range(4)], np.float32)
    wts = np.repeat(hist[nonzero] / 4, 4)
    for r in mse_candidates(len(hist)):
        t = np.float32(r * amax)  # the range end, stored in float32
        # float32 division, done in float64 and rounded once (equal for float32 operands)
        s = np.float32(np.float64(t) / np.float64(np.float32((qmax - qmin) / 2)))
        s = max(s, np.float32(eps))
        u = (pts.astype(np.float64) / np.float64(s)).astype(np.float32)  # float32 true division
        rounded = np.sign(u.astype(np.float64)) * np.floor(np.abs(u.astype(np.float64)) + 0.5)
        q = np.clip(rounded, qmin, qmax)
        y = (q * np.float64(s)).astype(np.float32)
        errors.append(float(np.sum(wts * (pts.astype(np.float64) - y.astype(np.float64)) ** 2)))
        scales.append(s)
    return np.array(scales, np.float32), np.array(errors)
