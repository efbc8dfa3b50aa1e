"""Helpers shared by the post-training algorithms: argument checks, batch collection, the weighted QAT layers, and
the per-channel mean of a conv/linear output computed from the mean input windows (the output's mean is linear
in the input, so only ``(C_in, kh, kw)`` window means are kept, never a layer's whole output)."""
from __future__ import annotations

from typing import Any, Iterable, List, Optional, Tuple

import numpy as np

from ...module import qat
from ...module.module import Module
from ...qtensor import QuantizedTensor
from ...tensor import Tensor
from ..fake_quant import FakeQuantize

__all__ = ["collect_batches", "weighted_layers", "conv_geometry", "as_float", "WindowMean", "ensure_fake_quant",
           "add_to_bias"]


def collect_batches(batches: Any, num_batches: Optional[int], owner: str) -> List[np.ndarray]:
    """The first ``num_batches`` batches (all if None) as float32 numpy arrays."""
    if num_batches is not None and (isinstance(num_batches, bool) or not isinstance(num_batches, int)
                                    or num_batches < 1):
        raise ValueError(f"{owner}: num_batches must be a positive int or None, got {num_batches!r}")
    if isinstance(batches, (np.ndarray, Tensor)) or not isinstance(batches, Iterable):
        raise TypeError(f"{owner}: batches must be an iterable of input batches (arrays or Tensors), got "
                        f"{type(batches).__name__}")
    out: List[np.ndarray] = []
    for b in batches:
        if isinstance(b, (tuple, list)) and b:  # (input, label) pairs: the input
            b = b[0]
        a = np.asarray(b.numpy() if isinstance(b, Tensor) else b)
        if a.dtype.kind not in "fiu" or a.ndim < 1:
            raise TypeError(f"{owner}: batches must hold numeric arrays, got {a.dtype} with shape {a.shape}")
        out.append(np.ascontiguousarray(a, np.float32))
        if num_batches is not None and len(out) >= num_batches:
            break
    if not out:
        raise ValueError(f"{owner}: batches is empty")
    return out


def weighted_layers(model: Module) -> List[Tuple[str, Module]]:
    """(name, module) of every QAT conv / linear layer, in ``named_modules`` order."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, qat.QATModule) and m.with_weight and hasattr(m, "folded_weight_and_bias")]


def conv_geometry(m: Module) -> Optional[Tuple[tuple, tuple, tuple, int]]:
    """(stride, padding, dilation, groups) of a conv layer (plain or with BN), None for a linear layer."""
    c = getattr(m, "conv", m)
    if not hasattr(c, "groups") or not hasattr(c, "stride"):
        return None

    def pair(v: Any) -> tuple:
        return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))
    return pair(c.stride), pair(c.padding), pair(c.dilation), int(c.groups)


def as_float(x: Any) -> np.ndarray:
    """float64 numpy values of a Tensor, a QuantizedTensor (dequantized) or an array."""
    if isinstance(x, QuantizedTensor):
        return np.asarray(x.dequantize(), np.float64)
    if isinstance(x, Tensor):
        return np.asarray(x.numpy(), np.float64)
    return np.asarray(x, np.float64)


class WindowMean:
    """Running mean of the input windows a conv (or linear) layer multiplies its weights with: for a conv,
    ``S[k, i, j] = mean over (n, oh, ow) of x_padded[n, k, oh*sh + i*dh, ow*sw + j*dw]``; for a linear layer the
    mean input row. ``output_mean(W, b)`` is then the exact per-channel mean of the layer's pre-activation output
    over everything seen."""

    def __init__(self, geometry: Optional[Tuple[tuple, tuple, tuple, int]], kernel: Tuple[int, int]) -> None:
        self.geometry = geometry
        self.kernel = kernel
        self.total: Optional[np.ndarray] = None
        self.count = 0

    def add(self, x: np.ndarray) -> None:
        if self.geometry is None:
            x2 = x.reshape(-1, x.shape[-1])
            s, n = x2.sum(axis=0), x2.shape[0]
        else:
            (sh, sw), (ph, pw), (dh, dw), _ = self.geometry
            kh, kw = self.kernel
            xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
            oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
            ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
            s = np.empty((x.shape[1], kh, kw))
            for i in range(kh):
                for j in range(kw):
                    win = xp[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]
                    s[:, i, j] = win.sum(axis=(0, 2, 3))
            n = x.shape[0] * oh * ow
        self.total = s if self.total is None else self.total + s
        self.count += n

    def output_mean(self, weight: np.ndarray, bias: Optional[np.ndarray]) -> np.ndarray:
        m = self.total / self.count
        w = np.asarray(weight, np.float64)
        if self.geometry is None:
            out = w @ m
        else:
            groups = self.geometry[3]
            oc, cin_g = w.shape[0], w.shape[1]
            mg = m.reshape(groups, cin_g, *m.shape[1:])
            out = np.einsum("gokij,gkij->go", w.reshape(groups, oc // groups, cin_g, *w.shape[2:]), mg).reshape(oc)
        return out + (0.0 if bias is None else np.asarray(bias, np.float64))


def ensure_fake_quant(model: Module) -> None:
    """Give every QAT module whose observer has no fake quant (MegEngine's ``calibration_qconfig`` family) a
    ``FakeQuantize`` of the observer's dtype, so the QFloat model computes quantized values (and, in eval with the
    observers off, runs the exact integer path that predicts the Q model). ``quantize()`` reads the same qparams
    either way."""
    for m in model.modules():
        if not isinstance(m, qat.QATModule):
            continue
        if m.with_act and m.act_observer is not None and m.act_fake_quant is None:
            m.act_fake_quant = FakeQuantize(m.act_observer.dtype)
        if m.with_weight and m.weight_observer is not None and m.weight_fake_quant is None:
            m.weight_fake_quant = FakeQuantize(m.weight_observer.dtype)


def add_to_bias(m: Module, delta: np.ndarray) -> None:
    """Shift the eval-mode folded bias of a QAT conv/linear layer by ``delta`` (per output channel): the BN's beta
    when the layer has a BN (``b_fold = beta + ...``), else the layer's own bias (created if it had none)."""
    from ...tensor import Parameter

    delta = np.asarray(delta, np.float32)
    bn = getattr(m, "bn", None)
    if bn is not None:
        if bn.bias is None:
            raise ValueError(f"{type(m).__name__}: its BatchNorm has no bias (affine=False) to correct")
        bn.bias.set_value((np.asarray(bn.bias.numpy(), np.float32) + delta).astype(np.float32))
        return
    owner = getattr(m, "conv", m)
    if owner.bias is None:
        owner.bias = Parameter(delta.copy())
    else:
        owner.bias.set_value((np.asarray(owner.bias.numpy(), np.float32) + delta).astype(np.float32))
