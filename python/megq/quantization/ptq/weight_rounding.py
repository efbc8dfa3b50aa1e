"""Data-aware weight rounding: each layer's int8 weights chosen to reproduce the layer's float output on its
(quantized) calibration inputs, instead of rounding every weight to its nearest level.

Objective (AdaRound's layer-wise one: Nagel et al., "Up or Down? Adaptive Rounding for Post-Training
Quantization", ICML 2020): for a layer with folded float weights ``W`` (rows: output channels; columns: the
``K = C_in/groups * kh * kw`` entries of a receptive field) and its input patches ``X`` (``K x P``), pick integer
weights ``Q`` on the layer's fixed weight grid (scale ``s`` per output channel or per tensor, clamp to the weight
dtype) minimising ``|| W X - (s * Q) X ||^2``. With ``H = X X^T`` this is ``sum_rows (w - s q) H (w - s q)^T``.

Solver: the sequential closed-form rounding of Optimal Brain Quantization as used by GPTQ (Frantar et al., "GPTQ:
Accurate Post-Training Quantization for Generative Pre-trained Transformers", ICLR 2023): the columns are rounded
one at a time (largest ``H_ii`` first), and the rounding error of each is compensated by the not yet rounded
columns through the Cholesky factor of ``H^-1``. No iterations, no learning rate: a ``K x K`` Cholesky and
``K`` rank-one updates per layer (all output channels at once; per channel for a depthwise conv, whose ``H`` is
``kh*kw`` square per channel). ``H`` gets ``damp * mean(diag H)`` on its diagonal (GPTQ's dampening: keeps the
inverse defined for inputs that are constant or collinear on the calibration set).

Layers are processed in execution order, each on the inputs produced by the already rounded and activation-
quantized layers upstream (so it also absorbs part of the upstream error, as AdaRound's sequential variant does).
A layer is rounded to nearest (left as it is) when its calibration set has fewer than ``min_samples_per_weight *
K`` patches (a ``K x K`` quadratic fitted on fewer points would fit the calibration images, not the layer), and
for grouped convs other than depthwise.

The chosen integers are stored as float parameters: the raw conv/linear weight is set so that the eval-mode
folded weight divided by the frozen scale rounds back to them (checked exactly), so ``quantize()`` and the QFloat
model's exact eval compute the same integers (QFloat == Q stays bit for bit). Weight scales are not changed.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ...module.module import Module
from ...reference.rounding import round_half_away_from_zero as _rha
from ..integer_layer import quantize_weight
from ..quantize import _has_seen_data
from ._common import as_float, collect_batches, conv_geometry, ensure_fake_quant, weighted_layers
from ._state import quantized_pass

__all__ = ["round_weights", "obq_round", "layer_hessian"]

logger = logging.getLogger("megq.quantization")


def obq_round(w: np.ndarray, h: np.ndarray, scale: Any, qmin: int, qmax: int, damp: float = 0.01,
              act_order: bool = True) -> np.ndarray:
    """Integers ``Q`` (same shape as ``w``) minimising ``sum_rows (w - s q) H (w - s q)^T`` approximately, by
    GPTQ's sequential rounding with error compensation.

    ``w``: ``(R, K)`` float weights; ``h``: ``(K, K)`` shared by every row, or ``(R, K, K)`` one per row (depthwise);
    ``scale``: scalar or ``(R,)``; ``[qmin, qmax]``: the integer range. ``damp`` > 0: relative diagonal dampening.
    """
    w = np.array(w, np.float64)
    r, k = w.shape
    s = np.broadcast_to(np.asarray(scale, np.float64).reshape(-1), (r,)).copy() if np.ndim(scale) else \
        np.full(r, float(scale))
    batched = h.ndim == 3
    h = np.array(h, np.float64) if batched else np.array(h, np.float64)[None]
    diag = np.diagonal(h, axis1=1, axis2=2).copy()
    dead = diag <= 0  # inputs that are always zero: their weights do not matter on this data; keep them nearest
    idx = np.arange(k)
    h[:, idx, idx] += np.where(dead, 1.0, 0.0)
    mean_diag = np.diagonal(h, axis1=1, axis2=2).mean(axis=1)
    h[:, idx, idx] += damp * mean_diag[:, None]
    # columns in decreasing H_ii (GPTQ's "act order"); per row when every row has its own H
    d = np.diagonal(h, axis1=1, axis2=2)
    order = np.argsort(-d, axis=1, kind="stable") if act_order else np.broadcast_to(idx, d.shape)
    h = h[np.arange(h.shape[0])[:, None, None], order[:, :, None], order[:, None, :]]
    order = np.broadcast_to(order, (r, k))
    w = np.take_along_axis(w, order, axis=1)
    # upper Cholesky factor U of H^-1 (H^-1 = U^T U): row i of U gives how column i's error spreads to later columns
    u = np.transpose(np.linalg.cholesky(np.linalg.inv(h)), (0, 2, 1))
    if not batched:
        u = np.broadcast_to(u, (r, k, k))
    q = np.empty((r, k), np.float64)
    for i in range(k):
        col = w[:, i]
        qi = np.clip(_rha(col / s), qmin, qmax)
        q[:, i] = qi
        err = (col - qi * s) / u[:, i, i]
        w[:, i + 1:] -= err[:, None] * u[:, i, i + 1:]
    out = np.empty_like(q)
    np.put_along_axis(out, order, q, axis=1)
    return out


def layer_hessian(x: np.ndarray, geometry: Optional[tuple], kernel: Tuple[int, int]) -> Tuple[np.ndarray, int]:
    """(H, P): ``H = X X^T`` of the layer's input patches and the number of patches ``P``.

    Linear (``geometry`` None): ``x`` is ``(N, K)``, ``H`` is ``(K, K)``. Conv with groups 1: ``H`` is
    ``(C_in*kh*kw)`` square in the weight's ``(c, i, j)`` order. Depthwise (groups == C_in, one input channel per
    group): ``H`` is ``(C, kh*kw, kh*kw)``, one per channel."""
    x = np.asarray(x, np.float32)  # float32 products: H needs no more, and the largest inputs are ~10^8 values
    if geometry is None:
        x2 = x.reshape(-1, x.shape[-1])
        return (x2.T @ x2).astype(np.float64), x2.shape[0]
    (sh, sw), (ph, pw), (dh, dw), groups = geometry
    kh, kw = kernel
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    wins = [xp[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]
            for i in range(kh) for j in range(kw)]
    p = x.shape[0] * oh * ow
    c = x.shape[1]
    if groups == 1:
        cols = np.stack(wins, axis=2)  # (N, C, kh*kw, OH, OW)
        cols = cols.transpose(1, 2, 0, 3, 4).reshape(c * kh * kw, -1)
        return (cols @ cols.T).astype(np.float64), p
    t = kh * kw
    h = np.empty((c, t, t))
    for a in range(t):
        for b in range(a, t):
            v = np.einsum("nchw,nchw->c", wins[a], wins[b])
            h[:, a, b] = h[:, b, a] = v
    return h, p


def _fold_factor(m: Module, oc: int) -> np.ndarray:
    """float32 per-output-channel factor ``k`` with ``folded weight = raw weight * k`` (1 without a BN)."""
    bn = getattr(m, "bn", None)
    if bn is None:
        return np.ones(oc, np.float32)
    f32 = np.float32
    var = np.asarray(bn.running_var.numpy(), f32).reshape(oc)
    istd = (f32(1.0) / np.sqrt(var + f32(bn.eps))).astype(f32)
    gamma = np.asarray(bn.weight.numpy(), f32).reshape(oc) if bn.weight is not None else np.ones(oc, f32)
    return (gamma * istd).astype(f32)


def _raw_weight_param(m: Module) -> Any:
    for attr in ("conv", "linear"):
        inner = getattr(m, attr, None)
        if inner is not None and hasattr(inner, "weight"):
            return inner.weight
    return m.weight


def set_integer_weights(m: Module, q: np.ndarray, name: str) -> None:
    """Store integers ``q`` (the folded weight's shape) as the layer's float weight: folded / scale rounds to ``q``.

    Raises RuntimeError if float32 rounding made any integer differ (never observed; a guard for exactness)."""
    qp = m.get_weight_qparams()
    w = m.folded_weight_and_bias()[0]
    scale = np.asarray(qp.scale, np.float32)
    s = scale.reshape((-1,) + (1,) * (w.ndim - 1)) if scale.size > 1 else scale.reshape(())
    k = _fold_factor(m, w.shape[0]).reshape((-1,) + (1,) * (w.ndim - 1))
    target = (q.astype(np.float32) * s).astype(np.float32)
    param = _raw_weight_param(m)
    raw_old = np.asarray(param.numpy(), np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(k != 0, target / np.where(k != 0, k, 1), raw_old).astype(np.float32)
    param.set_value(raw.reshape(raw_old.shape))
    got = quantize_weight(m.folded_weight_and_bias()[0], qp, name)[0]
    live = np.broadcast_to(k != 0, w.shape)
    if not np.array_equal(got[live], q.astype(np.int8)[live]):
        param.set_value(raw_old)
        raise RuntimeError(f"round_weights: '{name}': float32 storage did not reproduce the chosen integers")


def round_weights(qat_model: Module, batches: Any, num_batches: Optional[int] = None, *, damp: float = 0.01,
                  min_samples_per_weight: float = 2.0, act_order: bool = True, progress: bool = False
                  ) -> Dict[str, float]:
    """Choose every quantized conv/linear layer's integer weights by data-aware rounding (module docstring), in
    place, on a calibrated QFloat model.

    Returns ``{layer name: relative output error after / before}`` (``||W X - sQ X||^2`` with the chosen ``Q`` over
    the same with round-to-nearest, on the calibration patches; layers left to nearest rounding are absent).
    Afterwards the model is in eval mode with observers off and fake quants on, and its exact eval still predicts
    ``quantize(qat_model)`` bit for bit. The weight parameters are shared with the float model the QAT model was
    converted from unless ``quantize_qat(..., inplace=False)`` was used.
    """
    if not isinstance(qat_model, Module):
        raise TypeError(f"round_weights: qat_model must be a megq Module, got {type(qat_model).__name__}")
    for arg, v in (("damp", damp), ("min_samples_per_weight", min_samples_per_weight)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"round_weights: {arg} must be a positive number, got {v!r}")
    for arg, v in (("act_order", act_order), ("progress", progress)):
        if not isinstance(v, bool):
            raise TypeError(f"round_weights: {arg} must be a bool, got {type(v).__name__}")
    data = collect_batches(batches, num_batches, "round_weights")
    layers = weighted_layers(qat_model)
    if not layers:
        raise ValueError("round_weights: qat_model has no QAT conv/linear layer (call quantize_qat first)")
    for name, m in layers:
        if m.get_weight_qparams() is None or not _has_seen_data(getattr(m, "weight_observer", None)):
            raise ValueError(f"round_weights: '{name}' has no weight scale yet: calibrate the model first")
    ensure_fake_quant(qat_model)
    qat_model.eval()
    gains: Dict[str, float] = {}
    done = set()

    def hook_for(name: str):
        def hook(mod: Module, inputs: tuple, output: Any) -> Any:
            if name in done:
                return None
            done.add(name)
            gain = _round_layer(name, mod, as_float(inputs[0]), damp, min_samples_per_weight, act_order)
            if gain is None:
                return None
            gains[name] = gain
            if progress:
                logger.info("round_weights: %s output error x%.3f of nearest rounding", name, gain)
            return mod.forward(*inputs)
        return hook

    quantized_pass(qat_model, [(m, hook_for(n)) for n, m in layers], data)
    return gains


def _round_layer(name: str, m: Module, x: np.ndarray, damp: float, min_samples: float, act_order: bool
                 ) -> Optional[float]:
    w = np.asarray(m.folded_weight_and_bias()[0], np.float64)
    qp = m.get_weight_qparams()
    geometry = conv_geometry(m)
    kernel = tuple(w.shape[2:4]) if w.ndim == 4 else (1, 1)
    groups = 1 if geometry is None else geometry[3]
    depthwise = groups > 1 and w.shape[1] == 1 and groups == w.shape[0]
    if groups > 1 and not depthwise:
        return None
    q_near, scale = quantize_weight(w.astype(np.float32), qp, name)
    k = w[0].size
    h, p = layer_hessian(x, geometry, kernel)
    if p < min_samples * k:
        return None
    meta = qp.dtype_meta
    rows = w.reshape(w.shape[0], -1)
    q = obq_round(rows, h, scale, meta.qmin, meta.qmax, damp, act_order)
    s = (np.asarray(scale, np.float64).reshape(-1, 1) if np.ndim(scale) else float(scale))

    def err(qq: np.ndarray) -> float:
        e = rows - s * qq
        if depthwise:
            return float(np.einsum("ri,rij,rj->", e, h, e))
        return float(np.einsum("ri,ij,rj->", e, h, e))

    before, after = err(q_near.reshape(rows.shape).astype(np.float64)), err(q)
    if not after < before:  # nothing gained on this data: keep nearest rounding
        return None
    set_integer_weights(m, q.reshape(w.shape), name)
    return after / before if before > 0 else 1.0
