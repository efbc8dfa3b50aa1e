"""megq.quantization: MegEngine's quantization workflow (Float → QAT (QFloat) → quantized).

``quantize_qat(model, qconfig)`` → train (QAT) or ``calibrate(model, batches)`` (PTQ) → ``quantize(model)``;
see docs/quantization.md.

Layout (MegEngine's): dtypes, observers, fake quants, qconfigs, the integer eval registry and the integer
parameters of weighted layers (``IntegerLayer``) are used by the QAT and quantized modules; the workflow
(``quantize.py``: ``quantize_qat``, ``quantize``, ...) sits on top of those modules.
"""
from . import (
    integer_eval,
    ptq,  # noqa: E402  (registers calibrate's PTQ options)
)
from .calibrate import PTQ_OPTIONS, calibrate, freeze_calibration, register_ptq_option
from .compare import CompareReport, LayerError, compare  # noqa: E402
from .dtype import (
    QuantDtypeMeta,
    create_quantized_dtype,
    get_dtype_meta,
    get_scale,
    get_zero_point,
    is_quantize,
    qint1,
    qint2,
    qint4,
    qint8,
    qint8_narrow,
    qint32,
    quint2,
    quint4,
    quint8,
)
from .fake_quant import LSQ, TQT, FakeQuantize
from .integer_eval import INTEGER_FORWARD, integer_eval_enabled, register_integer_forward, set_integer_eval
from .integer_layer import IntegerLayer, act_qparams, quantize_weight
from .observer import (
    ExponentialMovingAverageObserver,
    HistogramObserver,
    MeanMinMaxObserver,
    MinMaxObserver,
    Observer,
    PassiveObserver,
    PerChannelExponentialMovingAverageObserver,
    PerChannelMinMaxObserver,
    SyncExponentialMovingAverageObserver,
    SyncMinMaxObserver,
)
from .qconfig import (
    PRESETS,
    QConfig,
    calibration_qconfig,
    calibration_qconfig_kl,
    calibration_qconfig_kl_per_channel,
    calibration_qconfig_meanminmax,
    calibration_qconfig_meanminmax_per_channel,
    calibration_qconfig_mse,
    calibration_qconfig_mse_per_channel,
    calibration_qconfig_per_channel,
    calibration_qconfig_percentile,
    calibration_qconfig_percentile_per_channel,
    calibration_qconfig_quint8,
    easyquant_qconfig,
    ema_fakequant_qconfig,
    ema_fakequant_qconfig_per_channel,
    ema_fakequant_qconfig_per_channel_quint8,
    ema_fakequant_qconfig_quint8,
    ema_lowbit_fakequant_qconfig,
    min_max_fakequant_qconfig,
    min_max_fakequant_qconfig_per_channel,
    passive_qconfig,
    sync_ema_fakequant_qconfig,
    tqt_qconfig,
)
from .quantize import (
    apply_easy_quant,
    compile,
    disable_fake_quant,
    disable_observer,
    enable_fake_quant,
    enable_observer,
    hook_qat_module,
    propagate_qconfig,
    quantize,
    quantize_qat,
    reset_qconfig,
)
from .sensitivity import QuantizerGain, SensitivityReport, sensitivity  # noqa: E402
from .utils import LSQParams, QParams, QuantMode, create_qparams, fake_quant_bias, fake_quant_tensor

__all__ = [
    # MegEngine's exports
    "FakeQuantize", "TQT", "LSQ",
    "Observer", "MinMaxObserver", "SyncMinMaxObserver", "ExponentialMovingAverageObserver",
    "SyncExponentialMovingAverageObserver", "HistogramObserver", "PassiveObserver",
    "QConfig", "min_max_fakequant_qconfig", "ema_fakequant_qconfig", "sync_ema_fakequant_qconfig",
    "ema_lowbit_fakequant_qconfig", "calibration_qconfig", "tqt_qconfig", "passive_qconfig", "easyquant_qconfig",
    "quantize_qat", "quantize", "reset_qconfig", "propagate_qconfig", "enable_fake_quant", "disable_fake_quant",
    "enable_observer", "disable_observer", "apply_easy_quant",
    "QParams", "QuantMode", "create_qparams", "fake_quant_tensor", "fake_quant_bias",
    # megq additions
    "PerChannelMinMaxObserver", "PerChannelExponentialMovingAverageObserver", "MeanMinMaxObserver", "LSQParams",
    "hook_qat_module",
    "QuantDtypeMeta", "qint8", "qint8_narrow", "quint8", "qint4", "quint4", "qint32", "qint1", "qint2", "quint2",
    "get_dtype_meta", "create_quantized_dtype", "get_scale", "get_zero_point", "is_quantize", "PRESETS",
    "ema_fakequant_qconfig_per_channel", "min_max_fakequant_qconfig_per_channel", "ema_fakequant_qconfig_quint8",
    "ema_fakequant_qconfig_per_channel_quint8", "calibration_qconfig_per_channel", "calibration_qconfig_quint8",
    "calibration_qconfig_percentile", "calibration_qconfig_kl", "calibration_qconfig_mse",
    "calibration_qconfig_percentile_per_channel", "calibration_qconfig_kl_per_channel",
    "calibration_qconfig_mse_per_channel", "calibration_qconfig_meanminmax",
    "calibration_qconfig_meanminmax_per_channel",
    "integer_eval", "INTEGER_FORWARD", "register_integer_forward", "integer_eval_enabled", "set_integer_eval",
    "IntegerLayer", "act_qparams", "quantize_weight",
    "compare", "CompareReport", "LayerError", "sensitivity", "SensitivityReport", "QuantizerGain", "ptq",
    "calibrate", "freeze_calibration", "PTQ_OPTIONS", "register_ptq_option", "set_integer_eval_backend",
    "get_integer_eval_backend", "compile",
]


def set_integer_eval_backend(backend: str) -> str:
    """Who computes the QFloat model's exact eval path: "kernels" (megq's C++ int8 kernels, default) or "reference"
    (megq.reference's numpy twin, for validation); returns the previous choice. See
    :mod:`megq.module.qat.integer_eval`."""
    from ..module.qat.integer_eval import set_integer_eval_backend as _set  # lazy: module.qat imports this package

    return _set(backend)


def get_integer_eval_backend() -> str:
    """The backend of the QFloat model's exact eval path ("kernels" or "reference")."""
    from ..module.qat.integer_eval import get_integer_eval_backend as _get

    return _get()
