"""``QATModule``: the base of every QAT (QFloat) module (MegEngine's ``module/qat/module.py``).

A QAT module holds up to four quantization children, created by ``set_qconfig`` (called by ``propagate_qconfig``):
``weight_observer``, ``act_observer``, ``weight_fake_quant``, ``act_fake_quant``. Class flags ``with_weight`` /
``with_act`` say which pairs exist.

qparams flow: ``apply_quant_weight``/``apply_quant_activation`` attach the observer's (or, for TQT/LSQ, the fake
quant's) ``QParams`` to the tensor they return (``tensor.qparams``). A consumer finds its input's qparams on the
input tensor (``inp.qparams``), which is how the bias gets its qint32 scale ``s_in * s_w``.

Eval fast path: see :mod:`megq.quantization.integer_eval`.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Optional, Tuple

import numpy as np

from ...quantization.integer_eval import integer_eval_enabled, lookup_integer_forward
from ...quantization.observer import PassiveObserver
from ...quantization.utils import QParams, fake_quant_bias
from ...tensor import Tensor, make_result
from ..module import Module

__all__ = ["QATModule", "in_quantized_region", "mark_quantized_region"]

# Activations a QAT module produced before its observer could give qparams (histogram observers compute them only
# when asked, after calibration): they are inside the quantized region all the same, which quantize() needs to know
# to refuse float-only activations there. Weak values by id: nothing is kept alive, a reused id is told apart by
# identity.
_QUANTIZED_REGION: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()


def mark_quantized_region(x: Any) -> None:
    """Record that ``x`` is an activation of the quantized region (see ``in_quantized_region``)."""
    if isinstance(x, Tensor):
        _QUANTIZED_REGION[id(x)] = x


def in_quantized_region(x: Any) -> bool:
    """Whether ``x`` was produced inside the quantized region by a QAT module without qparams attached."""
    return _QUANTIZED_REGION.get(id(x)) is x


def _alias(t: Any) -> Tensor:
    """A new tensor sharing ``t``'s data (identity on the tape), so qparams can be attached without mutating ``t``."""
    if isinstance(t, Tensor):
        return make_result(t._data, (t,), lambda g: (g,))
    return Tensor(t)


class QATModule(Module):
    """Base class of QAT modules. Subclasses also subclass the float module of the same name (``qat.Conv2d`` is a
    ``module.Conv2d``) and implement ``forward`` with fake quantization, and ``from_float_module``."""

    with_weight = True
    with_act = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_qat_slots()

    def _init_qat_slots(self) -> None:
        self.weight_observer = None
        self.act_observer = None
        self.weight_fake_quant = None
        self.act_fake_quant = None

    # -- construction ----------------------------------------------------------------------------------------------
    @classmethod
    def from_float_module(cls, float_module: Module) -> "QATModule":
        """The QAT version of ``float_module``, sharing its parameters, buffers and child modules."""
        m = cls.__new__(cls)
        m.__dict__.update(float_module.__dict__)
        m._forward_hooks = OrderedDict(float_module._forward_hooks)
        m._forward_pre_hooks = OrderedDict(float_module._forward_pre_hooks)
        m._init_qat_slots()
        m._check_float_module(float_module)
        return m

    def _check_float_module(self, float_module: Module) -> None:
        """Hook for subclasses to reject float modules they cannot represent."""

    def _weight_channels(self) -> Optional[int]:
        """Number of output channels of the weight (sizes per-channel observers)."""
        return None

    def set_qconfig(self, qconfig: Any) -> None:
        """Instantiate fresh observers / fake quants from ``qconfig``'s factories (act first, then weight)."""
        def make(factory):
            return factory() if factory is not None else None

        if self.with_act:
            self.act_observer = make(qconfig.act_observer)
            self.act_fake_quant = make(qconfig.act_fake_quant)
            _check_pair(self, self.act_observer, self.act_fake_quant, "act")
        if self.with_weight:
            self.weight_observer = make(qconfig.weight_observer)
            self.weight_fake_quant = make(qconfig.weight_fake_quant)
            _check_pair(self, self.weight_observer, self.weight_fake_quant, "weight")
            self._init_weight_channels()

    def _init_weight_channels(self) -> None:
        n = self._weight_channels()
        for obj in (self.weight_observer, self.weight_fake_quant):
            if n is not None and hasattr(obj, "init_channels"):
                obj.init_channels(n)

    # -- applying observers and fake quant ------------------------------------------------------------------------
    def _apply_fakequant_with_observer(self, target: Any, fake_quant: Any, observer: Any) -> Any:
        qparams = None
        out = target
        if observer is not None:
            out = observer(target)
            if fake_quant is not None or not getattr(observer, "lazy_qparams", False):
                qparams = observer.get_qparams()
        if fake_quant is not None:
            out = fake_quant(out, qparams)
            if hasattr(fake_quant, "get_qparams"):
                qparams = fake_quant.get_qparams()
        if qparams is not None:
            if out is target or not isinstance(out, Tensor):
                out = _alias(out)
            out.qparams = qparams.copy()
        return out

    def apply_quant_weight(self, target: Any) -> Any:
        """Observe and fake-quantize a weight; the result carries the weight qparams."""
        return self._apply_fakequant_with_observer(target, self.weight_fake_quant, self.weight_observer)

    def apply_quant_activation(self, target: Any) -> Any:
        """Observe and fake-quantize an output activation; the result carries the activation qparams (or, while the
        observer has none to give, the quantized-region mark)."""
        out = self._apply_fakequant_with_observer(target, self.act_fake_quant, self.act_observer)
        if isinstance(out, Tensor) and out.qparams is None:
            mark_quantized_region(out)
        return out

    def apply_quant_bias(self, target: Any, inp: Any, w_qat: Any) -> Any:
        """Fake-quantize the bias to qint32 (scale ``s_inp * s_w``) when both fake quants exist and are enabled and
        ``fake_quant_bias``'s conditions hold; otherwise return it unchanged."""
        wfq, afq = self.weight_fake_quant, self.act_fake_quant
        if wfq is not None and afq is not None and getattr(wfq, "enabled", False) and getattr(afq, "enabled", False):
            return fake_quant_bias(target, inp, w_qat)
        return target

    # -- switches --------------------------------------------------------------------------------------------------
    def set_fake_quant(self, enable: bool) -> None:
        if self.with_act and self.act_fake_quant is not None:
            self.act_fake_quant.enable() if enable else self.act_fake_quant.disable()
        if self.with_weight and self.weight_fake_quant is not None:
            self.weight_fake_quant.enable() if enable else self.weight_fake_quant.disable()

    def set_observer(self, enable: bool) -> None:
        if self.with_act and self.act_observer is not None:
            self.act_observer.enable() if enable else self.act_observer.disable()
        if self.with_weight and self.weight_observer is not None:
            self.weight_observer.enable() if enable else self.weight_observer.disable()

    # -- qparams / dtypes ------------------------------------------------------------------------------------------
    @staticmethod
    def _get_method_result(method: str, fake_quant: Any, observer: Any) -> Any:
        if hasattr(fake_quant, method):
            return getattr(fake_quant, method)()
        if hasattr(observer, method):
            return getattr(observer, method)()
        return None

    def get_weight_dtype(self) -> Any:
        """numpy quantized dtype of the weight (fake quant's if it has one, i.e. TQT/LSQ, else the observer's)."""
        return self._get_method_result("get_quantized_dtype", self.weight_fake_quant, self.weight_observer)

    def get_activation_dtype(self) -> Any:
        """numpy quantized dtype of the output activation."""
        return self._get_method_result("get_quantized_dtype", self.act_fake_quant, self.act_observer)

    def get_weight_qparams(self) -> Optional[QParams]:
        """Current weight QParams (fake quant's ``get_qparams`` if it has one, else the observer's), or None."""
        return self._get_method_result("get_qparams", self.weight_fake_quant, self.weight_observer)

    def get_activation_qparams(self) -> Optional[QParams]:
        """Current output-activation QParams, or None."""
        return self._get_method_result("get_qparams", self.act_fake_quant, self.act_observer)

    def folded_weight_and_bias(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """float32 (weight, bias) used by the eval forward before fake quantization (BN folded with running stats
        for the ``*Bn*`` modules). Only modules with weights implement it."""
        raise NotImplementedError(f"{type(self).__name__} has no weight")

    # -- eval dispatch ---------------------------------------------------------------------------------------------
    def quant_active(self) -> bool:
        """True when every fake quant this module should have exists and is enabled and no observer of it is
        collecting statistics (a PassiveObserver never collects). The integer eval path requires this."""
        if self.with_weight and (self.weight_fake_quant is None or not self.weight_fake_quant.enabled):
            return False
        if self.with_act and (self.act_fake_quant is None or not self.act_fake_quant.enabled):
            return False
        for ob in (self.weight_observer, self.act_observer):
            if ob is not None and ob.enabled and not isinstance(ob, PassiveObserver):
                return False
        return True

    def _integer_forward(self) -> Any:
        if self.training or not integer_eval_enabled():
            return None
        fn = lookup_integer_forward(type(self))
        if fn is None or not self.quant_active():
            return None
        return fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = self._integer_forward()
        if fn is None:
            return super().__call__(*args, **kwargs)
        for hook in list(self._forward_pre_hooks.values()):
            res = hook(self, args)
            if res is not None:
                args = res if isinstance(res, tuple) else (res,)
        out = fn(self, *args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            res = hook(self, args, out)
            if res is not None:
                out = res
        return out


def _check_pair(owner: Module, observer: Any, fake_quant: Any, which: str) -> None:
    """Reject an observer / FakeQuantize dtype mismatch at configuration time (MegEngine asserts at forward)."""
    from ...quantization.fake_quant import FakeQuantize

    if observer is None or fake_quant is None or not isinstance(fake_quant, FakeQuantize):
        return
    od = getattr(observer, "dtype", None)
    if od is not None and od is not fake_quant.dtype:
        raise ValueError(f"{type(owner).__name__}: {which} observer dtype {od.name!r} is not the {which} fake-quant "
                         f"dtype {fake_quant.dtype.name!r}")
