"""BN folding arithmetic shared by the QAT ConvBn / LinearBn modules (MegEngine's ``calc_conv_bn_qat``)."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from ...tensor import Tensor


def fold_bn(weight: Tensor, bias: Optional[Tensor], bn: Any, with_bias: bool
            ) -> Tuple[Any, Optional[Any], Any]:
    """``(w_fold, b_fold, scale_factor)`` with the BN *running* statistics, as Tensor ops (so gradients reach the
    weight, gamma, beta and conv bias):

    * ``istd = 1 / sqrt(running_var + eps)`` (float32), ``scale_factor = gamma * istd``
    * ``w_fold = W * scale_factor`` broadcast over the output channel (axis 0)
    * ``b_fold = beta + gamma * (b - running_mean) * istd`` if ``with_bias`` (eval), else None (training).
    """
    oc = weight.shape[0]
    f32 = np.float32
    mean = np.asarray(bn.running_mean.numpy(), f32).reshape(oc)
    var = np.asarray(bn.running_var.numpy(), f32).reshape(oc)
    istd = (f32(1.0) / np.sqrt(var + f32(bn.eps))).astype(f32)
    gamma = bn.weight.reshape(oc) if bn.weight is not None else np.ones(oc, f32)
    scale_factor = gamma * istd
    if not isinstance(scale_factor, Tensor):
        scale_factor = Tensor(np.asarray(scale_factor, f32))
    w_fold = weight * scale_factor.reshape((oc,) + (1,) * (weight.ndim - 1))
    b_fold = None
    if with_bias:
        beta = bn.bias.reshape(oc) if bn.bias is not None else np.zeros(oc, f32)
        b = bias.reshape(oc) if bias is not None else np.zeros(oc, f32)
        b_fold = beta + gamma * (b - mean) * istd
        if not isinstance(b_fold, Tensor):
            b_fold = Tensor(np.asarray(b_fold, f32))
    return w_fold, b_fold, scale_factor


def check_bn(owner: str, bn: Any) -> None:
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{owner}: the BatchNorm must track running statistics (track_running_stats=True) to be "
                         "folded for quantization")
