"""QConfig: four factories (weight_observer, act_observer, weight_fake_quant, act_fake_quant) and presets.

MegEngine's presets are reproduced exactly; megq adds per-channel weights, quint8 (asymmetric) activations and
histogram calibration by percentile / KL / MSE. See docs/quantization.md for the table.
"""
from __future__ import annotations

from collections import namedtuple
from functools import partial

from ..module.module import Module
from .fake_quant import TQT, FakeQuantize
from .observer import (
    ExponentialMovingAverageObserver,
    HistogramObserver,
    MeanMinMaxObserver,
    MinMaxObserver,
    PassiveObserver,
    PerChannelMinMaxObserver,
    SyncExponentialMovingAverageObserver,
    SyncMinMaxObserver,
)
from .utils import QuantMode

__all__ = ["QConfig", "PRESETS"]

_Base = namedtuple("QConfig", ["weight_observer", "act_observer", "weight_fake_quant", "act_fake_quant"])


class QConfig(_Base):
    """``QConfig(weight_observer, act_observer, weight_fake_quant, act_fake_quant)``: each a factory called with no
    arguments (usually ``functools.partial(Class, **kwargs)``) or None. Passing an instance raises ``ValueError``."""

    def __new__(cls, weight_observer, act_observer, weight_fake_quant, act_fake_quant):
        for field, v in zip(_Base._fields, (weight_observer, act_observer, weight_fake_quant, act_fake_quant)):
            if isinstance(v, Module):
                raise ValueError(f"QConfig needs factories (e.g. functools.partial(Class, ...)), not instances; "
                                 f"{field} is a {type(v).__name__} instance")
            if v is not None and not callable(v):
                raise ValueError(f"QConfig: {field} must be a callable factory or None, got {v!r}")
        return super().__new__(cls, weight_observer, act_observer, weight_fake_quant, act_fake_quant)


_ASYM = QuantMode.ASYMMERTIC

# -- MegEngine presets (exact) ----------------------------------------------------------------------------------
min_max_fakequant_qconfig = QConfig(
    weight_observer=partial(MinMaxObserver, dtype="qint8_narrow"),
    act_observer=partial(MinMaxObserver, dtype="qint8"),
    weight_fake_quant=partial(FakeQuantize, dtype="qint8_narrow"),
    act_fake_quant=partial(FakeQuantize, dtype="qint8"),
)

ema_fakequant_qconfig = QConfig(
    weight_observer=partial(MinMaxObserver, dtype="qint8_narrow"),
    act_observer=partial(ExponentialMovingAverageObserver, dtype="qint8"),
    weight_fake_quant=partial(FakeQuantize, dtype="qint8_narrow"),
    act_fake_quant=partial(FakeQuantize, dtype="qint8"),
)

sync_ema_fakequant_qconfig = QConfig(
    weight_observer=partial(SyncMinMaxObserver, dtype="qint8_narrow"),
    act_observer=partial(SyncExponentialMovingAverageObserver, dtype="qint8"),
    weight_fake_quant=partial(FakeQuantize, dtype="qint8_narrow"),
    act_fake_quant=partial(FakeQuantize, dtype="qint8"),
)

ema_lowbit_fakequant_qconfig = QConfig(
    weight_observer=partial(MinMaxObserver, dtype="qint4"),
    act_observer=partial(ExponentialMovingAverageObserver, dtype="qint4"),
    weight_fake_quant=partial(FakeQuantize, dtype="qint4"),
    act_fake_quant=partial(FakeQuantize, dtype="qint4"),
)

calibration_qconfig = QConfig(
    weight_observer=partial(MinMaxObserver, dtype="qint8_narrow"),
    act_observer=partial(HistogramObserver, dtype="qint8"),
    weight_fake_quant=None,
    act_fake_quant=None,
)

tqt_qconfig = QConfig(
    weight_observer=None,
    act_observer=None,
    weight_fake_quant=partial(TQT, dtype="qint8_narrow"),
    act_fake_quant=partial(TQT, dtype="qint8"),
)

passive_qconfig = QConfig(
    weight_observer=partial(PassiveObserver, dtype="qint8_narrow"),
    act_observer=partial(PassiveObserver, dtype="qint8"),
    weight_fake_quant=partial(FakeQuantize, dtype="qint8_narrow"),
    act_fake_quant=partial(FakeQuantize, dtype="qint8"),
)

easyquant_qconfig = passive_qconfig

# -- megq presets ------------------------------------------------------------------------------------------------
_PC_W = partial(PerChannelMinMaxObserver, dtype="qint8_narrow")
_W = partial(MinMaxObserver, dtype="qint8_narrow")
_FQ_W = partial(FakeQuantize, dtype="qint8_narrow")
_FQ_A = partial(FakeQuantize, dtype="qint8")
_FQ_AU = partial(FakeQuantize, dtype="quint8")
_EMA_AU = partial(ExponentialMovingAverageObserver, mode=_ASYM, dtype="quint8")

ema_fakequant_qconfig_per_channel = QConfig(_PC_W, partial(ExponentialMovingAverageObserver, dtype="qint8"),
                                            _FQ_W, _FQ_A)
min_max_fakequant_qconfig_per_channel = QConfig(_PC_W, partial(MinMaxObserver, dtype="qint8"), _FQ_W, _FQ_A)
ema_fakequant_qconfig_quint8 = QConfig(_W, _EMA_AU, _FQ_W, _FQ_AU)
ema_fakequant_qconfig_per_channel_quint8 = QConfig(_PC_W, _EMA_AU, _FQ_W, _FQ_AU)

calibration_qconfig_per_channel = QConfig(_PC_W, partial(HistogramObserver, dtype="qint8"), None, None)
calibration_qconfig_quint8 = QConfig(_W, partial(HistogramObserver, mode=_ASYM, dtype="quint8"), None, None)

# Asymmetric quint8 activations ranged by the mean of the per-image min/max (NNCF's default estimator for
# activations): with ``calibrate(..., ends_minmax=True, equalize_activations={"linear": True},
# weight_rounding=True)`` the most accurate post-training recipe measured on MobileNetV2 (docs/accuracy.md). The
# per-channel one keeps per-output-channel weights; the other MegEngine's per-tensor weights.
_MEAN_AU = partial(MeanMinMaxObserver, mode=_ASYM, dtype="quint8")
calibration_qconfig_meanminmax_per_channel = QConfig(_PC_W, _MEAN_AU, None, None)
calibration_qconfig_meanminmax = QConfig(_W, _MEAN_AU, None, None)


def _hist(method: str, per_channel: bool, **kw):
    return QConfig(_PC_W if per_channel else _W, partial(HistogramObserver, dtype="qint8", method=method, **kw),
                   None, None)


calibration_qconfig_percentile = _hist("percentile", False, percentile=99.99)
calibration_qconfig_kl = _hist("kl", False)
calibration_qconfig_mse = _hist("mse", False)
calibration_qconfig_percentile_per_channel = _hist("percentile", True, percentile=99.99)
calibration_qconfig_kl_per_channel = _hist("kl", True)
calibration_qconfig_mse_per_channel = _hist("mse", True)

PRESETS = {
    name: value for name, value in dict(globals()).items()
    if isinstance(value, QConfig) and not name.startswith("_")
}

__all__ += sorted(PRESETS)
