"""Empirical bias correction (as NNCF's ``BiasCorrection`` and AIMET's empirical bias correction do; Nagel et al.,
"Data-Free Quantization Through Weight Equalization and Bias Correction", ICCV 2019, for the analysis).

Quantizing a layer's weights shifts the mean of its output: ``E[W_q x] != E[W x]``. Over the calibration data,
per output channel, the shift is measured and subtracted from the layer's bias. Layers are corrected one at a time
in execution order, each measured on the quantized inputs produced by the already corrected layers upstream.

Two targets for the mean (``absorb_upstream``):

* ``False`` (default): the layer's float weights on the *same quantized inputs*, ``E[W x_q]``: only the shift this
  layer's weight rounding makes (Nagel et al.'s bias correction, measured instead of derived from BN statistics);
* ``True``: the float network's own output, ``E[W x]`` with the float inputs of the float layers upstream: the
  correction also absorbs the mean error arriving from upstream (activation clipping and rounding included).

Measured on torchvision's pretrained MobileNetV2 (docs/accuracy.md), the first improves the logit cosine and the
second lowers it: matching each channel's mean to float over the whole calibration set moves the residual stream
where activation error is not a per-channel constant. Hence the default.

The comparison is made on the pre-activation output (the folded conv/linear result before a fused ReLU/ReLU6),
where the bias acts linearly. The means are computed from the mean input windows (``WindowMean``): exact, and no
layer's full output is stored.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import numpy as np

from ...autodiff import no_grad
from ...module.module import Module
from ...tensor import Tensor
from ..integer_eval import integer_eval
from ..integer_layer import quantize_weight
from ..quantize import _has_seen_data
from ._common import (
    WindowMean,
    add_to_bias,
    as_float,
    collect_batches,
    conv_geometry,
    ensure_fake_quant,
    weighted_layers,
)
from ._state import quant_state, quantized_pass

__all__ = ["bias_correct"]

logger = logging.getLogger("megq.quantization")


def bias_correct(qat_model: Module, batches: Any, num_batches: Optional[int] = None, *,
                 absorb_upstream: bool = False, progress: bool = False) -> Dict[str, np.ndarray]:
    """Correct the bias of every quantized conv/linear layer of a calibrated QFloat model, in place.

    ``qat_model``: a QAT model whose observers have seen data (after calibration); ``absorb_upstream``: see the
    module docstring; ``batches``: an iterable of
    input batches (arrays or Tensors, or ``(input, label)`` pairs), of which the first ``num_batches`` are used.
    The quantized pass runs them as one concatenated batch (the corrections are sequential over layers), so
    memory grows with the number of images used.

    Observers without a fake quant (the ``calibration_qconfig`` family) get a ``FakeQuantize`` of their dtype
    (see :func:`ensure_fake_quant`). Afterwards the model is in eval mode with observers off and fake quants on; its
    exact eval forward still predicts ``quantize(qat_model)`` bit for bit (the correction is a change of float
    parameters, and both read the same ones). The bias parameters are shared with the float model the QAT model was
    converted from unless ``quantize_qat(..., inplace=False)`` was used.

    Returns ``{layer name: correction added to its folded bias}``.
    """
    if not isinstance(qat_model, Module):
        raise TypeError(f"bias_correct: qat_model must be a megq Module, got {type(qat_model).__name__}")
    for arg, v in (("progress", progress), ("absorb_upstream", absorb_upstream)):
        if not isinstance(v, bool):
            raise TypeError(f"bias_correct: {arg} must be a bool, got {type(v).__name__}")
    data = collect_batches(batches, num_batches, "bias_correct")
    layers = weighted_layers(qat_model)
    if not layers:
        raise ValueError("bias_correct: qat_model has no QAT conv/linear layer (call quantize_qat first)")
    for name, m in layers:
        if (m.get_weight_qparams() is None or m.get_activation_qparams() is None
                or not all(_has_seen_data(getattr(m, o, None)) for o in ("act_observer", "weight_observer"))):
            raise ValueError(f"bias_correct: '{name}' has no scale yet: calibrate the model first")

    ensure_fake_quant(qat_model)
    qat_model.eval()
    stats_f: Dict[str, WindowMean] = {}

    def window_mean(m: Module, x: np.ndarray) -> WindowMean:
        w = m.folded_weight_and_bias()[0]
        return WindowMean(conv_geometry(m), tuple(w.shape[2:4]) if w.ndim == 4 else (1, 1))

    # 1. float pass: the mean input windows of every layer in the float network
    def observe(name: str):
        def hook(mod: Module, inputs: tuple) -> None:
            x = as_float(inputs[0])
            if name not in stats_f:
                stats_f[name] = window_mean(mod, x)
            stats_f[name].add(x)
        return hook

    handles = [m.register_forward_pre_hook(observe(n)) for n, m in layers]
    try:
        with no_grad(), integer_eval(False), quant_state(qat_model, fake_quant=False, observer=False):
            for b in data:
                qat_model(Tensor(b))
    finally:
        for h in handles:
            h.remove()

    # 2. quantized pass: each layer, once its (corrected) inputs arrive, is corrected and recomputed
    corrections: Dict[str, np.ndarray] = {}

    def correct(name: str):
        def hook(mod: Module, inputs: tuple, output: Any) -> Any:
            if name not in stats_f or name in corrections:
                return None
            x = as_float(inputs[0])
            stats_q = window_mean(mod, x)
            stats_q.add(x)
            w, b = mod.folded_weight_and_bias()
            wq, ws = quantize_weight(w, mod.get_weight_qparams(), type(mod).__name__)
            ws = ws.reshape((-1,) + (1,) * (w.ndim - 1)) if ws.ndim else ws
            target = stats_f[name] if absorb_upstream else stats_q
            delta = target.output_mean(w, b) - stats_q.output_mean(wq.astype(np.float64) * ws, b)
            add_to_bias(mod, delta)
            corrections[name] = delta.astype(np.float32)
            if progress:
                logger.info("bias_correct: %s mean |shift| %.3g", name, float(np.abs(delta).mean()))
            return mod.forward(*inputs)
        return hook

    quantized_pass(qat_model, [(m, correct(n)) for n, m in layers], data)
    return corrections
