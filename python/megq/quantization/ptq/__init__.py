"""Post-training quantization algorithms. Options of :func:`megq.quantization.calibrate`
(``calibrate(qat_model, batches, equalize=True, bias_correction=True)``) and callable alone:

* :func:`ends_minmax`: global min/max activation ranges for the model input and output layer (before);
* :func:`equalize`: cross-layer equalization of conv pairs (before the observers see data);
* :func:`equalize_activations`: per-channel activation range equalization of ReLU/ReLU6 -> conv pairs (before);
* :func:`search_ranges`: sequential per-tensor activation range search (after, first);
* :func:`round_weights`: data-aware rounding of the int8 weights (GPTQ's solver for AdaRound's layer-wise objective;
  after, before bias correction);
* :func:`bias_correct`: empirical bias correction of the calibrated QFloat model (after);
* :func:`ensure_fake_quant`: fake quants for observer-only qconfigs, so the QFloat model computes quantized values.

See docs/accuracy.md for what each buys on real networks.
"""
from __future__ import annotations

from typing import Any, List

import numpy as np

from ...module.module import Module
from ..calibrate import register_ptq_option
from ._common import ensure_fake_quant
from .act_equalize import equalize_activations
from .bias_correction import bias_correct
from .ends import ends_minmax
from .equalize import equalize
from .range_search import search_ranges
from .weight_rounding import round_weights

__all__ = ["ends_minmax", "equalize", "equalize_activations", "bias_correct", "search_ranges", "round_weights",
           "ensure_fake_quant"]


def _flag(name: str, value: Any) -> dict:
    """An option's value: False/None (off), True (defaults) or a dict of keyword arguments."""
    if value is None or value is False:
        return {}
    if value is True:
        return {"_on": True}
    if isinstance(value, dict):
        return dict(value, _on=True)
    raise TypeError(f"calibrate: {name} must be a bool or a dict of options, got {type(value).__name__}")


def _equalize_option(model: Module, batches: List[np.ndarray], value: Any) -> None:
    kw = _flag("equalize", value)
    if kw.pop("_on", False):
        equalize(model, batches[0], **kw)


def _bias_correction_option(model: Module, batches: List[np.ndarray], value: Any) -> None:
    kw = _flag("bias_correction", value)
    if kw.pop("_on", False):
        bias_correct(model, batches, **kw)


def _weight_rounding_option(model: Module, batches: List[np.ndarray], value: Any) -> None:
    kw = _flag("weight_rounding", value)
    if kw.pop("_on", False):
        round_weights(model, batches, **kw)


def _equalize_activations_option(model: Module, batches: List[np.ndarray], value: Any) -> None:
    kw = _flag("equalize_activations", value)
    if kw.pop("_on", False):
        equalize_activations(model, batches, **kw)


def _range_search_option(model: Module, batches: List[np.ndarray], value: Any) -> None:
    kw = _flag("range_search", value)
    if kw.pop("_on", False):
        search_ranges(model, batches, **kw)


def _ends_minmax_option(model: Module, batches: List[np.ndarray], value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"calibrate: ends_minmax must be a bool, got {type(value).__name__}")
    if value:
        ends_minmax(model)


register_ptq_option("ends_minmax", "before", _ends_minmax_option, order=-1)
register_ptq_option("equalize", "before", _equalize_option)
register_ptq_option("equalize_activations", "before", _equalize_activations_option, order=1)
register_ptq_option("range_search", "after", _range_search_option, order=5)
register_ptq_option("weight_rounding", "after", _weight_rounding_option, order=10)
register_ptq_option("bias_correction", "after", _bias_correction_option, order=20)
