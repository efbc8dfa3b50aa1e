"""softmax, log_softmax, cross_entropy (with label smoothing) and topk_accuracy."""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np

from ..tensor import Tensor, make_result
from ._utils import data

__all__ = ["softmax", "log_softmax", "cross_entropy", "topk_accuracy"]


def _log_softmax(a: np.ndarray, axis: int) -> np.ndarray:
    shifted = a - a.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(inp: Any, axis: int = -1) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``axis`` (max-shifted for stability)."""
    out = np.exp(_log_softmax(data(inp), axis))

    def backward(g: np.ndarray):
        return (out * (g - (g * out).sum(axis=axis, keepdims=True)),)

    return make_result(out, (inp,), backward)


def log_softmax(inp: Any, axis: int = -1) -> Tensor:
    """``x - logsumexp(x)`` along ``axis``."""
    out = _log_softmax(data(inp), axis)

    def backward(g: np.ndarray):
        return (g - np.exp(out) * g.sum(axis=axis, keepdims=True),)

    return make_result(out, (inp,), backward)


def _labels(label: Any, n: int, k: int) -> np.ndarray:
    lab = np.asarray(data(label))
    if lab.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: label must hold integer class indices, got dtype {lab.dtype}")
    if lab.shape != (n,):
        raise ValueError(f"cross_entropy: label must have shape ({n},), got {lab.shape}")
    if lab.size and (lab.min() < 0 or lab.max() >= k):
        raise ValueError(f"cross_entropy: label values must be in [0, {k}), got range [{lab.min()}, {lab.max()}]")
    return lab


def cross_entropy(pred: Any, label: Any, axis: int = 1, with_logits: bool = True, label_smoothing: float = 0.0,
                  reduction: str = "mean", *, label_smooth: Optional[float] = None) -> Tensor:
    """Cross entropy between ``pred`` (N, K) and integer ``label`` (N,), MegEngine's ``F.nn.cross_entropy``.

    ``with_logits``: ``pred`` are logits (else probabilities). ``label_smoothing`` ε (MegEngine spells it
    ``label_smooth``; both are accepted, not together) mixes the one-hot target with the uniform distribution:
    ``q = (1-ε)·onehot + ε/K``. ``reduction``: "mean", "sum" or "none".
    """
    if label_smooth is not None:
        if label_smoothing:
            raise TypeError("cross_entropy: pass label_smooth or label_smoothing, not both")
        label_smoothing = label_smooth
    p = data(pred)
    if p.ndim != 2 or axis not in (1, -1):
        raise ValueError(f"cross_entropy: pred must be 2-D (N, K) with axis=1, got shape {p.shape}, axis={axis}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    n, k = p.shape
    lab = _labels(label, n, k)
    logp = _log_softmax(p, 1) if with_logits else np.log(p)
    q = np.full((n, k), label_smoothing / k, p.dtype)
    q[np.arange(n), lab] += 1.0 - label_smoothing
    per = -(q * logp).sum(axis=1)
    scale = 1.0 / n if reduction == "mean" else 1.0
    out = per.mean() if reduction == "mean" else per.sum() if reduction == "sum" else per

    def backward(g: np.ndarray):
        gs = (g * scale)[..., None] if reduction == "none" else g * scale
        if with_logits:
            # d/dz of -sum(q * log_softmax(z)) = softmax(z) * sum(q) - q, and sum(q) = 1
            return ((np.exp(logp) - q) * gs).astype(p.dtype, copy=False), None
        return (-q / p * gs).astype(p.dtype, copy=False), None

    return make_result(np.asarray(out, p.dtype), (pred, label), backward)


def topk_accuracy(logits: Any, target: Any, topk: Union[int, Tuple[int, ...]] = 1) -> Union[Tensor, Tuple[Tensor, ...]]:
    """Fraction of rows whose ``target`` is among the ``topk`` largest logits (a tuple of ks gives a tuple)."""
    z = data(logits)
    t = np.asarray(data(target)).reshape(-1)
    if z.ndim != 2 or t.shape[0] != z.shape[0]:
        raise ValueError(f"topk_accuracy: logits must be (N, K) and target (N,), got {z.shape} and {t.shape}")
    ks = (topk,) if isinstance(topk, int) else tuple(topk)
    order = np.argsort(-z, axis=1, kind="stable")
    res = tuple(Tensor(np.float32((order[:, :k] == t[:, None]).any(axis=1).mean())) for k in ks)
    return res[0] if isinstance(topk, int) else res
