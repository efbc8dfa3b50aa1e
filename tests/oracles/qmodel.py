"""Independent numpy oracle for a quantized (Q) model, layer by layer, from a QAT model's float parameters and qparams.

Written from the documented contract (docs/quantization.md, docs/operators.md, docs/architecture.md), not from megq:

* BN folded as MegEngine's ``fold_weight_bias`` (megengine/module/qat/conv_bn.py), in float32:
  ``istd = 1 / sqrt(var + eps)``, ``w = W * (gamma * istd)``, ``b = beta + gamma * (b0 - mean) * istd``;
* ``weight_q = clamp(RHA(float32(W) / s_w), qmin, qmax)`` (true float32 division, per output channel or tensor);
* ``bias_q = RHA(b / float32(s_x * s_w))`` in int32;
* ``acc = sum (x_q - z_x) * w_q + bias_q`` exactly (int64 here);
* ``M = float32(s_x) * float32(s_w) / float32(s_y)``, ``y = clamp(RHA(float32(acc) * M) + z_y, lo, hi)``, ``lo``
  raised to ``z_y`` for a fused ReLU;
* input ``x_q = clamp(RHA(x / s) + z)``; output ``float32(q - z) * s``.

Each float32 operation is computed with numpy's float32 arithmetic (IEEE single, one rounding per operation);
RHA (round half away from zero) is done in float64, exact for float32 inputs. Activations are int64 arrays in the
logical NCHW (or (N, C)) layout with an :class:`Act` for their qparams.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import ops
from .conv import oracle_conv_acc

f32 = np.float32


def rha(v):
    v = np.asarray(v, np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


@dataclass
class Act:
    """Per-tensor activation qparams."""
    scale: np.float32
    zero_point: int
    qmin: int
    qmax: int

    @property
    def dtype(self) -> str:
        return "int8" if self.qmin < 0 else "uint8"

    @classmethod
    def of(cls, qp) -> "Act":
        z = 0 if qp.zero_point is None else int(np.asarray(qp.zero_point).reshape(()))
        return cls(f32(np.asarray(qp.scale, np.float32).reshape(())), z, int(qp.dtype_meta.qmin),
                   int(qp.dtype_meta.qmax))


def quantize(x: np.ndarray, act: Act) -> np.ndarray:
    v = np.asarray(x, f32) / act.scale  # float32 true division
    return np.clip(rha(v) + act.zero_point, act.qmin, act.qmax).astype(np.int64)


def dequantize(q: np.ndarray, act: Act) -> np.ndarray:
    return (q - act.zero_point).astype(f32) * act.scale


def fold_bn(W, b, gamma, beta, mean, var, eps):
    """MegEngine's BN folding with the running statistics, float32 throughout."""
    W, gamma, beta, mean, var = (np.asarray(a, f32) for a in (W, gamma, beta, mean, var))
    b = np.zeros_like(beta) if b is None else np.asarray(b, f32)
    istd = f32(1.0) / np.sqrt(var + f32(eps))
    factor = gamma * istd
    w_fold = W * factor.reshape((-1,) + (1,) * (W.ndim - 1))
    b_fold = beta + gamma * (b - mean) * istd
    return w_fold.astype(f32), b_fold.astype(f32)


def quantize_weight(W, s_w, qmin, qmax):
    s = np.asarray(s_w, f32)
    s = s.reshape((-1,) + (1,) * (W.ndim - 1)) if s.size > 1 else s.reshape(())
    return np.clip(rha(np.asarray(W, f32) / s), qmin, qmax).astype(np.int64)


def quantize_bias(b, s_x, s_w):
    acc_scale = f32(s_x) * np.asarray(s_w, f32)
    return rha(np.asarray(b, f32) / acc_scale).astype(np.int64)


def requantize(acc, s_x, s_w, out: Act, relu: bool):
    m = (f32(s_x) * np.asarray(s_w, f32)) / out.scale
    v = acc.astype(f32) * m  # float32(acc) * M, broadcast over the channel (last) axis
    lo = max(out.qmin, out.zero_point) if relu else out.qmin
    return np.clip(rha(v) + out.zero_point, lo, out.qmax).astype(np.int64)


def weighted(x_q, x_act: Act, W, b, w_qp, out: Act, relu: bool, *, conv=None):
    """Conv (``conv`` = dict(stride, padding, dilation, groups)) or linear layer; x_q NCHW / (N, C) int64."""
    s_w = np.asarray(w_qp.scale, f32).reshape(-1) if np.asarray(w_qp.scale).size > 1 else f32(w_qp.scale)
    w_q = quantize_weight(W, s_w, int(w_qp.dtype_meta.qmin), int(w_qp.dtype_meta.qmax))
    if conv is None:
        acc = (x_q - x_act.zero_point) @ w_q.T
    else:
        acc = oracle_conv_acc(x_q.transpose(0, 2, 3, 1), w_q, None, x_zero_point=x_act.zero_point, **conv)
    if b is not None:
        acc = acc + quantize_bias(b, x_act.scale, s_w)
    assert np.abs(acc).max() < 2**31
    y = requantize(acc, x_act.scale, s_w, out, relu)
    return y if conv is None else y.transpose(0, 3, 1, 2)


def elemwise(method, a, a_act: Act, b, b_act: Act, out: Act):
    """ADD / FUSE_ADD_RELU / MUL on NCHW ints (oracles.ops states the float32 formulas)."""
    args = (a, b, a_act.scale, a_act.zero_point, b_act.scale, b_act.zero_point, out.scale, out.zero_point)
    if method == "MUL":
        y = ops.mul(*args, out.dtype)
    else:
        y = ops.add(*args, out.dtype, relu=method == "FUSE_ADD_RELU")
    return np.clip(y.astype(np.int64), out.qmin, out.qmax)


def concat(parts, acts, out: Act):
    """Channel concat (axis 1 of NCHW): each input requantized to the output qparams."""
    ys = [np.clip(ops.requantize(p, a.scale, a.zero_point, out.scale, out.zero_point, out.dtype).astype(np.int64),
                  out.qmin, out.qmax) for p, a in zip(parts, acts)]
    return np.concatenate(ys, axis=1)


def pool(x_q, act: Act, mode, kernel, stride, padding=(0, 0)):
    """max / avg_exclude / avg_include pooling of NCHW ints (output keeps the input's qparams)."""
    nhwc = x_q.transpose(0, 2, 3, 1).astype(act.dtype)
    y = ops.pool2d(nhwc, mode, kernel, stride, padding, zero_point=act.zero_point)
    return y.astype(np.int64).transpose(0, 3, 1, 2)


def global_avg_pool(x_q, act: Act):
    y = ops.global_avg_pool(x_q.transpose(0, 2, 3, 1).astype(act.dtype))
    return y.astype(np.int64).transpose(0, 3, 1, 2)
