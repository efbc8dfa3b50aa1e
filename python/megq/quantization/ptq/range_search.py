"""Sequential activation range search: each per-tensor activation quantizer's clipping range chosen to minimise
its quantization error on the calibration data, measured with every upstream layer already quantized.

Objective (per quantizer, per candidate range): the mean over calibration images of the *relative* squared error
of the quantized activation, ``mean_i ||fq(z_i) - z_i||^2 / ||z_i||^2`` (``z_i``: the activation of image ``i``
before this quantizer, computed by the quantized network upstream). Why relative per image: the metric a deployed
classifier is judged by (logit cosine, top-1) weighs every image alike, while a plain MSE over the whole set lets
the few images with the largest activations choose the range (MSE clips the others' detail for them) and a range
from statistics alone (min/max, KL, percentiles) weighs neither clipping nor rounding on the images themselves.

Candidates: ``r * (lo, hi)`` (asymmetric) or ``r * (-amax, amax)`` (symmetric) for ``r`` in ``candidates``
log-spaced ratios from ``min_ratio`` to 1, with ``lo, hi`` the extremes seen on the calibration set (0 always
included), the scale and zero point of each from the same rules as the observers (``calculate_qparams``), so the
chosen qparams are exactly what an observer with that range would give. The errors are computed from a per-image
histogram of ``bins`` bins (bin centres; the exact zeros of ReLU outputs counted apart, since 0 is always on the
grid).

Sequential: quantizers are visited in execution order during one quantized forward pass over the calibration set;
each chooses its range from the values the already-searched quantizers upstream produce, then its output is
recomputed with the new range. The chosen range replaces the observer's: a min/max observer (MinMax, EMA) gets the
range as its min/max; any other observer (histogram) becomes a PassiveObserver holding the qparams.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ...module import qat
from ...module.module import Module
from ...reference.rounding import round_half_away_from_zero as _rha
from ..observer import HistogramObserver, MinMaxObserver, PassiveObserver, calculate_qparams
from ..quantize import _has_seen_data
from ..utils import QuantMode
from ._common import as_float, collect_batches, ensure_fake_quant
from ._state import quantized_pass

__all__ = ["search_ranges", "best_range"]

logger = logging.getLogger("megq.quantization")


def best_range(images: np.ndarray, mode: QuantMode, dtype_meta: Any, eps: float = 1e-5, candidates: int = 64,
               min_ratio: float = 0.1, bins: int = 4096) -> Tuple[float, float, np.ndarray]:
    """(lo, hi, errors): the candidate range with the least mean per-image relative quantization error of
    ``images`` (``(N, ...)`` float values, one row per image) and the error of every candidate (ratios ascending).
    """
    z = np.asarray(images, np.float32).reshape(images.shape[0], -1)
    mn, mx = float(min(z.min(), 0.0)), float(max(z.max(), 0.0))
    ratios = np.geomspace(min_ratio, 1.0, candidates)
    if mode == QuantMode.SYMMERTIC:
        amax = max(-mn, mx)
        lo_c, hi_c = -ratios * amax, ratios * amax
    else:
        lo_c, hi_c = ratios * mn, ratios * mx
    qp = calculate_qparams(lo_c.astype(np.float32), hi_c.astype(np.float32), mode, dtype_meta, eps)
    s = qp.scale.astype(np.float64)[:, None]
    zp = (np.zeros(len(ratios)) if qp.zero_point is None else qp.zero_point.astype(np.float64))[:, None]
    if mx <= mn:
        return mn, mx, np.zeros(len(ratios))
    width = (mx - mn) / bins
    centres = mn + (np.arange(bins) + 0.5) * width
    # error of each bin centre under each candidate: (candidates, bins), with the quantizer's own arithmetic
    q = np.clip(_rha((centres[None, :] / s)) + zp, dtype_meta.qmin, dtype_meta.qmax)
    sq_err = ((q - zp) * s - centres[None, :]) ** 2
    errors = np.zeros(len(ratios))
    for row in z:
        nz = row[row != 0]  # exact zeros are exact under every candidate
        energy = float(np.dot(row.astype(np.float64), row))
        if energy <= 0 or nz.size == 0:
            continue
        idx = np.minimum(((nz.astype(np.float64) - mn) / width).astype(np.int64), bins - 1)
        hist = np.bincount(idx, minlength=bins).astype(np.float64)
        errors += sq_err @ hist / energy
    errors /= z.shape[0]
    best = int(np.argmin(errors))
    return float(lo_c[best]), float(hi_c[best]), errors


def _set_range(m: Module, lo: float, hi: float) -> None:
    ob = m.act_observer
    qp = ob.get_qparams() if not isinstance(ob, PassiveObserver) else ob.get_qparams()
    mode, meta = qp.mode, qp.dtype_meta
    eps = getattr(ob, "scale_limit", 1e-5)
    new = calculate_qparams(np.float32(lo), np.float32(hi), mode, meta, eps)
    if isinstance(ob, MinMaxObserver) and not isinstance(ob, HistogramObserver) and np.ndim(ob.min_val._data) == 0:
        ob.min_val._data = np.array(lo, np.float32)
        ob.max_val._data = np.array(hi, np.float32)
        if ob.get_qparams() == new:
            return
    passive = PassiveObserver(dtype=meta)
    passive.set_qparams(new)
    passive.disable()
    m.act_observer = passive


def search_ranges(qat_model: Module, batches: Any, num_batches: Optional[int] = None, *, candidates: int = 64,
                  min_ratio: float = 0.1, bins: int = 4096, progress: bool = False) -> Dict[str, Tuple[float, float]]:
    """Search the clipping range of every per-tensor activation quantizer of a calibrated QFloat model (module
    docstring), in place. Returns ``{module name: (lo, hi)}`` of the chosen ranges.

    Afterwards the model is in eval mode with observers off and fake quants on; its exact eval forward predicts
    ``quantize(qat_model)`` bit for bit (only qparams changed)."""
    if not isinstance(qat_model, Module):
        raise TypeError(f"search_ranges: qat_model must be a megq Module, got {type(qat_model).__name__}")
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 2:
        raise ValueError(f"search_ranges: candidates must be an int >= 2, got {candidates!r}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 16:
        raise ValueError(f"search_ranges: bins must be an int >= 16, got {bins!r}")
    if isinstance(min_ratio, bool) or not isinstance(min_ratio, (int, float)) or not 0 < min_ratio < 1:
        raise ValueError(f"search_ranges: min_ratio must be in (0, 1), got {min_ratio!r}")
    data = collect_batches(batches, num_batches, "search_ranges")
    ensure_fake_quant(qat_model)
    qat_model.eval()
    targets = []
    for name, m in qat_model.named_modules():
        if not isinstance(m, qat.QATModule) or not m.with_act or m.act_fake_quant is None or m.act_observer is None:
            continue
        qp = m.get_activation_qparams()
        if qp is None or getattr(qp, "scale", None) is None or not _has_seen_data(m.act_observer):
            raise ValueError(f"search_ranges: '{name}' has no activation scale yet: calibrate the model first")
        if np.size(qp.scale) != 1:
            continue  # per-channel activations: not searched
        targets.append((name, m))
    chosen: Dict[str, Tuple[float, float]] = {}

    def hook_for(name: str):
        def hook(mod: Module, inputs: tuple, output: Any) -> Any:
            if name in chosen:
                return None
            fq = mod.act_fake_quant
            fq.disable()
            try:
                z = as_float(mod.forward(*inputs))
            finally:
                fq.enable()
            qp = mod.get_activation_qparams()
            lo, hi, _ = best_range(z, qp.mode, qp.dtype_meta, getattr(mod.act_observer, "scale_limit", 1e-5),
                                   candidates, min_ratio, bins)
            _set_range(mod, lo, hi)
            chosen[name] = (lo, hi)
            if progress:
                logger.info("search_ranges: %s [%.4g, %.4g] (seen [%.4g, %.4g])", name, lo, hi, z.min(), z.max())
            return mod.forward(*inputs)
        return hook

    quantized_pass(qat_model, [(m, hook_for(n)) for n, m in targets], data)
    return chosen
