"""Fake-quantization modules: FakeQuantize (observer-driven), TQT and LSQ (learned scales)."""
from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np

from .. import functional as F
from ..module.module import Module
from ..tensor import Parameter, Tensor
from .dtype import QuantDtypeMeta, create_quantized_dtype, get_dtype_meta
from .utils import LSQParams, QParams, QuantMode, fake_quant_tensor, lsq_forward, tqt_forward

__all__ = ["FakeQuantize", "TQT", "LSQ"]


class _FakeQuantize(Module):
    """Base: ``(dtype, enable=True)``. ``forward(inp, qparams=None)`` fake-quantizes when ``enabled``, else returns
    ``inp``. Fake quant is not tied to train/eval (MegEngine)."""

    def __init__(self, dtype: Any = "qint8", enable: bool = True, **kwargs: Any) -> None:
        if "narrow_range" in kwargs:
            kwargs.pop("narrow_range")
            warnings.warn("narrow_range is ignored: use dtype='qint8_narrow' instead", stacklevel=2)
        super().__init__(**kwargs)
        self.dtype: QuantDtypeMeta = get_dtype_meta(dtype, type(self).__name__)
        self.qmin = self.dtype.qmin
        self.qmax = self.dtype.qmax
        self.enabled = bool(enable)

    def enable(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    def fake_quant_forward(self, inp: Any, qparams: Optional[QParams] = None) -> Any:
        raise NotImplementedError

    def normal_forward(self, inp: Any, qparams: Optional[QParams] = None) -> Any:
        return inp

    def forward(self, inp: Any, qparams: Optional[QParams] = None) -> Any:
        if self.enabled:
            return self.fake_quant_forward(inp, qparams)
        return self.normal_forward(inp, qparams)

    def _label(self) -> str:
        return f"{type(self).__name__}" + (f" '{self.name}'" if self.name else "")

    def _extra_repr(self) -> str:
        return f"dtype={self.dtype.name}, enabled={self.enabled}"


class FakeQuantize(_FakeQuantize):
    """``FakeQuantize(dtype, enable=True)``: fake quant with the observer's qparams (``fake_quant_tensor``).
    The observer's dtype must be the *same object* as this one (MegEngine's identity check)."""

    def fake_quant_forward(self, inp: Any, qparams: Optional[QParams] = None) -> Any:
        if qparams is None:
            raise ValueError(f"{self._label()}: no qparams to fake-quantize with (FakeQuantize needs an observer; "
                             "use TQT/LSQ for an observer-less qconfig)")
        if qparams.dtype_meta is not self.dtype:
            raise ValueError(f"{self._label()}: observer dtype "
                             f"{getattr(qparams.dtype_meta, 'name', None)!r} is not the fake-quant dtype "
                             f"{self.dtype.name!r} (they must be the same QuantDtypeMeta)")
        return fake_quant_tensor(inp, qparams)


class TQT(_FakeQuantize):
    """Trained Quantization Thresholds (arXiv 1903.08066). ``scale`` is a learnable ``Parameter`` holding log2 of
    the step (initially 0, step 1.0); symmetric only. ``set_qparams`` starts it from an observed scale (that is
    what ``reset_qconfig(net, tqt_qconfig)`` does)."""

    def __init__(self, dtype: Any = "qint8", enable: bool = True, **kwargs: Any) -> None:
        super().__init__(dtype, enable, **kwargs)
        self.scale = Parameter(np.array(0.0, np.float32))

    def fake_quant_forward(self, inp: Any, qparams: Optional[QParams] = None) -> Any:
        return tqt_forward(self.qmin, self.qmax, inp, self.scale)

    def set_qparams(self, qparams: QParams) -> None:
        if qparams is None or qparams.scale is None:
            raise ValueError(f"{self._label()}: set_qparams needs qparams with a scale")
        if qparams.mode != QuantMode.SYMMERTIC:
            raise ValueError(f"{self._label()}: TQT supports symmetric mode only, got {qparams.mode}")
        self.scale.set_value(np.log2(np.asarray(qparams.scale, np.float32)).astype(np.float32))

    def get_qparams(self) -> QParams:
        step = np.exp2(self.scale.numpy().astype(np.float32)).astype(np.float32)
        return QParams(QuantMode.SYMMERTIC, self.dtype, step, None, 0 if step.ndim else None)

    def get_quantized_dtype(self) -> np.dtype:
        return create_quantized_dtype(self.dtype, self.get_qparams().scale, None)


class LSQ(_FakeQuantize):
    """Learned Step size Quantization (arXiv 1902.08153): ``step_size`` Parameter (initially 1.0), effective step
    ``|step_size| + eps``, clamp before rounding. ``grad_scale`` defaults to 1.0 (MegEngine; not the paper's
    ``1/sqrt(N·Qp)``): pass an ``LSQParams`` with ``grad_scale`` to ``set_qparams`` to change it. Mode defaults to
    symmetric until ``set_qparams`` (MegEngine leaves it None)."""

    def __init__(self, dtype: Any = "qint8", enable: bool = True, eps: float = 1e-5, **kwargs: Any) -> None:
        super().__init__(dtype, enable, **kwargs)
        self.eps = Tensor(np.array(eps, np.float32))
        self.step_size = Parameter(np.array(1.0, np.float32))
        self.mode = QuantMode.SYMMERTIC
        self.zero_point = Tensor(np.array(0.0, np.float32))
        self.grad_scale = Tensor(np.array(1.0, np.float32))

    def set_qparams(self, qparams: QParams) -> None:
        if qparams is None or qparams.scale is None:
            raise ValueError(f"{self._label()}: set_qparams needs qparams with a scale")
        self.mode = qparams.mode
        if qparams.mode == QuantMode.ASYMMERTIC and qparams.zero_point is not None:
            self.zero_point.set_value(np.asarray(qparams.zero_point, np.float32))
        else:
            self.zero_point.set_value(np.zeros_like(np.asarray(qparams.scale, np.float32)))
        s = np.asarray(qparams.scale, np.float32)
        eps = self.eps.numpy()
        self.step_size.set_value(np.where(s < eps, np.float32(0), s - eps).astype(np.float32))
        gs = getattr(qparams, "grad_scale", None)
        if gs is not None:
            self.grad_scale.set_value(np.asarray(gs, np.float32))

    def _step(self) -> Tensor:
        return F.abs(self.step_size) + self.eps

    def fake_quant_forward(self, inp: Any, qparams: Optional[QParams] = None) -> Any:
        return lsq_forward(self.qmin, self.qmax, inp, self._step(), self.zero_point, self.grad_scale)

    def get_qparams(self) -> LSQParams:
        step = (np.abs(self.step_size.numpy()) + self.eps.numpy()).astype(np.float32)
        zp = None
        if self.mode == QuantMode.ASYMMERTIC:
            zp = np.broadcast_to(self.zero_point.numpy(), step.shape).astype(np.int32)
        return LSQParams(self.mode, self.dtype, step, zp, self.grad_scale.numpy(), 0 if step.ndim else None)

    def get_quantized_dtype(self) -> np.dtype:
        qp = self.get_qparams()
        return create_quantized_dtype(self.dtype, qp.scale, qp.zero_point)
