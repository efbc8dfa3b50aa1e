"""QuantMode, QParams, fake quantization of tensors and biases (``megengine.quantization.utils``).

Numerics (MegEngine's FakeQuant kernel, float32 only):

* forward  ``q = clamp(round(x / s) + z, qmin, qmax)``, ``y = (q - z) * s`` with a true float32 division and
  round-half-away-from-zero (:func:`megq.reference.rounding.round_half_away_from_zero`); NaN stays NaN.
* backward clipped straight-through estimator on the *rounded* value: ``dx = dy`` where
  ``qmin <= round(x/s) + z <= qmax``, else 0; no gradient to scale or zero point.

Per-channel scales (shape ``(C,)``) broadcast along ``axis`` (0 for weights ``(C, ...)``; 1 for NCHW activations).
"""
from __future__ import annotations

from enum import Enum
from typing import Any, Optional, Union

import numpy as np

from ..functional._utils import unbroadcast
from ..reference.rounding import round_half_away_from_zero as _rha
from ..tensor import Tensor, make_result
from .dtype import QuantDtypeMeta, _builtin_quant_dtypes, get_dtype_meta

__all__ = ["QuantMode", "QParams", "LSQParams", "create_qparams", "fake_quant_tensor", "fake_quant_bias",
           "tqt_forward", "lsq_forward", "channel_view"]


class QuantMode(Enum):
    """Quantization mode. ``SYMMERTIC``/``ASYMMERTIC`` are MegEngine's (misspelled) public names;
    ``SYMMETRIC``/``ASYMMETRIC`` are aliases of the same members."""

    SYMMERTIC = 1
    ASYMMERTIC = 2
    SYMMETRIC = 1  # alias
    ASYMMETRIC = 2  # alias


def _f32(v: Any) -> Optional[np.ndarray]:
    if v is None:
        return None
    if isinstance(v, Tensor):
        v = v.numpy()
    return np.array(v, dtype=np.float32)


def _i32(v: Any) -> Optional[np.ndarray]:
    if v is None:
        return None
    if isinstance(v, Tensor):
        v = v.numpy()
    a = np.asarray(v)
    if a.dtype.kind == "f":
        if np.any(a != np.round(a)):
            raise ValueError(f"zero_point must be integral, got {v!r}")
    return np.array(a, dtype=np.int32)


def _slots(cls: type) -> tuple:
    out: list = []
    for c in reversed(cls.__mro__):
        out.extend(getattr(c, "__slots__", ()))
    return tuple(out)


class QParams:
    """``QParams(mode, dtype_meta, scale, zero_point, axis=None)``.

    ``scale``: float32 ndarray, shape ``()`` (per-tensor) or ``(C,)`` (per-channel); ``zero_point``: int32 ndarray of
    the same shape, or None (symmetric). ``axis`` (megq extension): the channel axis a per-channel scale applies to
    (None means 0, the output-channel axis of weights). ``update(other)`` copies every slot; ``==`` compares slots.
    """

    __slots__ = ("mode", "dtype_meta", "scale", "zero_point", "axis")

    def __init__(self, mode: QuantMode, dtype_meta: Optional[QuantDtypeMeta], scale: Any, zero_point: Any,
                 axis: Optional[int] = None) -> None:
        self.mode = mode
        self.dtype_meta = dtype_meta
        self.scale = _f32(scale)
        self.zero_point = _i32(zero_point)
        self.axis = axis

    @property
    def per_channel(self) -> bool:
        return self.scale is not None and self.scale.ndim >= 1 and self.scale.size > 1

    def update(self, qparams: "QParams") -> None:
        for key in _slots(QParams):
            setattr(self, key, getattr(qparams, key, None))

    def copy(self) -> "QParams":
        """A shallow copy (arrays shared)."""
        new = type(self).__new__(type(self))
        for key in _slots(type(self)):
            setattr(new, key, getattr(self, key, None))
        return new

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, QParams):
            return NotImplemented
        for key in _slots(type(self)):
            a, b = getattr(self, key, None), getattr(other, key, None)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or np.shape(a) != np.shape(b) or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        name = self.dtype_meta.name if self.dtype_meta is not None else None
        mode = self.mode.name if isinstance(self.mode, QuantMode) else self.mode
        return f"{type(self).__name__}(mode={mode}, dtype={name}, scale={self.scale}, zero_point={self.zero_point})"


class LSQParams(QParams):
    """QParams plus LSQ's ``grad_scale``."""

    __slots__ = ("grad_scale",)

    def __init__(self, mode: QuantMode, dtype_meta: Optional[QuantDtypeMeta], scale: Any, zero_point: Any,
                 grad_scale: Any = 1.0, axis: Optional[int] = None) -> None:
        super().__init__(mode, dtype_meta, scale, zero_point, axis)
        self.grad_scale = _f32(grad_scale)

    def update(self, qparams: QParams) -> None:
        super().update(qparams)
        self.grad_scale = getattr(qparams, "grad_scale", None)


def create_qparams(mode: QuantMode = QuantMode.SYMMERTIC, dtype_meta: Union[str, QuantDtypeMeta, None] = None,
                   scale: Any = None, zero_point: Any = None, axis: Optional[int] = None) -> QParams:
    """QParams from a mode, a dtype (name or meta), a scale and a zero point (MegEngine's helper)."""
    if isinstance(dtype_meta, str):
        dtype_meta = get_dtype_meta(dtype_meta, "create_qparams")
    if not isinstance(mode, QuantMode):
        raise TypeError(f"create_qparams: mode must be a QuantMode, got {mode!r}")
    return QParams(mode, dtype_meta, scale, zero_point, axis)


def channel_view(v: np.ndarray, ndim: int, axis: Optional[int], what: str = "scale",
                 shape: Optional[tuple] = None) -> np.ndarray:
    """Reshape a per-channel ``(C,)`` vector to broadcast along ``axis`` of an ``ndim``-D tensor; scalars and
    already-broadcastable arrays pass through."""
    v = np.asarray(v)
    if v.ndim == 0 or v.size == 1 and v.ndim == 1:
        return v.reshape(())
    if v.ndim == 1:
        ax = 0 if axis is None else axis
        if ndim == 0:
            raise ValueError(f"per-channel {what} of shape {v.shape} cannot apply to a scalar")
        ax = ax % ndim
        if shape is not None and shape[ax] != v.shape[0]:
            raise ValueError(f"per-channel {what} has {v.shape[0]} channels but the tensor has {shape[ax]} along "
                             f"axis {ax} (shape {tuple(shape)})")
        view = [1] * ndim
        view[ax] = v.shape[0]
        return v.reshape(view)
    return v


def _data(x: Any) -> np.ndarray:
    return x.numpy() if isinstance(x, Tensor) else np.asarray(x)


def _fake_quant_arrays(x: np.ndarray, s: np.ndarray, z: Optional[np.ndarray], qmin: int, qmax: int):
    """(y, mask) of the FakeQuant kernel in float32."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = _rha(x / s)
        if z is not None:
            q = q + z
        mask = (q >= np.float32(qmin)) & (q <= np.float32(qmax))
        q = np.clip(q, np.float32(qmin), np.float32(qmax))
        y = (q - z) * s if z is not None else q * s
    return y.astype(np.float32, copy=False), mask


def fake_quant_tensor(inp: Any, qparams: QParams, axis: Optional[int] = None) -> Tensor:
    """Fake-quantize ``inp`` with ``qparams`` (see module doc). ``axis`` overrides ``qparams.axis`` for a
    per-channel scale (default axis 0)."""
    if qparams is None or qparams.scale is None:
        raise ValueError("fake_quant_tensor: qparams with a scale are required")
    if qparams.dtype_meta is None:
        raise ValueError("fake_quant_tensor: qparams.dtype_meta is None")
    x = _data(inp).astype(np.float32, copy=False)
    ax = axis if axis is not None else qparams.axis
    s = channel_view(_f32(qparams.scale), x.ndim, ax, "scale", x.shape)
    z = None
    if qparams.mode == QuantMode.ASYMMERTIC and qparams.zero_point is not None:
        z = channel_view(np.asarray(qparams.zero_point).astype(np.float32), x.ndim, ax, "zero_point", x.shape)
    y, mask = _fake_quant_arrays(x, s, z, qparams.dtype_meta.qmin, qparams.dtype_meta.qmax)
    return make_result(y, (inp,), lambda g: (g * mask,))


def _bias_quantizable(inp_qp: Optional[QParams], w_qp: Optional[QParams]) -> bool:
    if inp_qp is None or w_qp is None or inp_qp.scale is None or w_qp.scale is None:
        return False
    if inp_qp.dtype_meta is None or w_qp.dtype_meta is None:
        return False
    if w_qp.mode != QuantMode.SYMMERTIC or w_qp.dtype_meta.np_dtype_str != "int8":
        return False
    if inp_qp.mode == QuantMode.SYMMERTIC and inp_qp.dtype_meta.np_dtype_str == "int8":
        return True  # MegEngine's rule
    # megq extension: quint8 activations with a zero point (the bias scale does not depend on the zero point)
    if inp_qp.mode == QuantMode.ASYMMERTIC and inp_qp.dtype_meta.np_dtype_str == "uint8":
        return True
    return False


def bias_qparams(inp_qp: Optional[QParams], w_qp: Optional[QParams]) -> Optional[QParams]:
    """qint32 QParams of the bias (scale ``float32(s_in) * float32(s_w)``, per output channel for per-channel
    weights), or None when the bias is not quantized (rules of :func:`fake_quant_bias`)."""
    if not _bias_quantizable(inp_qp, w_qp):
        return None
    s_in = _f32(inp_qp.scale)
    if s_in.size != 1:
        return None  # per-channel activations: no single bias scale
    scale = (s_in.reshape(()) * _f32(w_qp.scale)).astype(np.float32)
    return create_qparams(QuantMode.SYMMERTIC, _builtin_quant_dtypes["qint32"], scale, None)


def fake_quant_bias(bias: Any, inp: Any, w_qat: Any) -> Any:
    """Fake-quantize ``bias`` to qint32 with scale ``s_inp * s_w`` (as MegEngine's ``QATModule.apply_quant_bias``).

    Applies only when ``bias`` is not None, both ``inp`` and ``w_qat`` carry qparams with a scale, the weight is
    symmetric int8-stored, and the input is symmetric int8-stored (MegEngine) or asymmetric uint8-stored (megq
    extension for quint8 activations). Otherwise the bias is returned unchanged. The result carries the bias qparams.
    """
    if bias is None:
        return bias
    bqp = bias_qparams(getattr(inp, "qparams", None), getattr(w_qat, "qparams", None))
    if bqp is None:
        return bias
    b = fake_quant_tensor(bias, bqp, axis=0)
    b.qparams = bqp
    return b


def tqt_forward(qmin: int, qmax: int, inp: Any, scale: Any, axis: Optional[int] = None) -> Tensor:
    """TQT fake quant: ``t = 2**scale``, ``y = clamp(round(x/t), qmin, qmax) * t``.

    Backward (MegEngine's TQT op): ``u = x/t``, ``clip = u < qmin-0.5 or u > qmax+0.5``; ``dx = dy * !clip``;
    ``dscale = sum(dy * ln2 * t * (clip ? r : r - u))`` reduced to ``scale``'s shape.
    """
    x = _data(inp).astype(np.float32, copy=False)
    sc = _data(scale).astype(np.float32)
    sv = channel_view(sc, x.ndim, axis, "scale", x.shape)
    t = np.exp2(sv).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = (x / t).astype(np.float32, copy=False)
        r = np.clip(_rha(u), np.float32(qmin), np.float32(qmax))
        y = (r * t).astype(np.float32, copy=False)
    clip = (u < np.float32(qmin - 0.5)) | (u > np.float32(qmax + 0.5))

    def backward(g: np.ndarray):
        gx = g * ~clip
        term = np.where(clip, r, r - u)
        gs = unbroadcast((g * np.float32(np.log(2.0)) * t * term).astype(np.float32), np.shape(sv))
        return gx, gs.reshape(sc.shape)

    return make_result(y, (inp, scale), backward)


def lsq_forward(qmin: int, qmax: int, inp: Any, step_size: Any, zero_point: Any = None, grad_scale: Any = None,
                axis: Optional[int] = None) -> Tensor:
    """LSQ fake quant with the step ``s`` (already ``|step|+eps``), clamp *before* rounding:
    ``v = clamp(x/s + zp, qmin, qmax)``, ``y = (round(v) - zp) * s``.

    Backward (MegEngine's LSQ op): ``v_raw = x/s + zp``; ``dx = dy`` where ``qmin <= v_raw <= qmax``; ``ds = sum(dy *
    grad_scale * (qmin if v_raw < qmin, qmax if v_raw > qmax, round(v_raw) - v_raw otherwise))``.
    """
    x = _data(inp).astype(np.float32, copy=False)
    sa = _data(step_size).astype(np.float32)
    s = channel_view(sa, x.ndim, axis, "step_size", x.shape)
    zp = np.float32(0) if zero_point is None else channel_view(_data(zero_point).astype(np.float32), x.ndim, axis)
    gsc = np.float32(1) if grad_scale is None else channel_view(_data(grad_scale).astype(np.float32), x.ndim, axis)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v_raw = (x / s + zp).astype(np.float32, copy=False)
        v = np.clip(v_raw, np.float32(qmin), np.float32(qmax))
        y = ((_rha(v) - zp) * s).astype(np.float32, copy=False)
    lo, hi = v_raw < np.float32(qmin), v_raw > np.float32(qmax)

    def backward(g: np.ndarray):
        gx = g * ~(lo | hi)
        term = np.where(lo, np.float32(qmin), np.where(hi, np.float32(qmax), _rha(v_raw) - v_raw))
        gs = unbroadcast((g * gsc * term).astype(np.float32), np.shape(s))
        return gx, gs.reshape(sa.shape)

    return make_result(y, (inp, step_size), backward)
