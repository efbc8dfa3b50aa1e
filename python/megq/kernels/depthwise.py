"""Depthwise conv2d on NHWC int8/uint8 activations (groups == input channels, channel
multiplier >= 1), with weights packed once.

Contract (numpy form: :func:`megq.reference.depthwise_conv2d`)::

    output channel o reads input channel o // m  (m = channel multiplier = C_out / C_in)
    acc[n, oh, ow, o] = sum_{i,j} (x[n, ih, iw, o // m] - z_x) * w[o, i, j] + b[o]     exact, int32
        ih = oh*stride_h - pad_h + i*dil_h, iw likewise; padding taps read z_x (contribute 0)
    y = clamp(round_half_away(float32(acc) * M[o]) + z_y, lo, hi)

the same requantization as :func:`megq.kernels.gemm` (per-tensor or per-output-channel
``M``, fused ReLU / ReLU6 via ``out_min`` / ``out_max``, see :func:`relu_bounds`).
Packing checks that ``max|x - z_x| * sum|w[o]| + |b[o]|`` fits in int32, so every ISA
path is exact, including for -128 weights (``narrow_range=False``). The AVX2 path runs
16 channels per vector with ``vpmaddwd`` on pairs of taps (unrolled for 3x3 and 5x5).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _C
from ._checks import dims_fit_int, int_arg
from .pooling import _pair
from .quantize import qdtype_arg, quantized_array, zero_point_arg

PackedDepthwiseWeights = _C.PackedDepthwiseWeights


def pack_depthwise_weights(weight: np.ndarray, bias: Optional[np.ndarray] = None, multiplier=None, *,
                           in_channels: Optional[int] = None, input_dtype="int8", input_zero_point: int = 0,
                           narrow_range: bool = True, isa: Optional[str] = None) -> PackedDepthwiseWeights:
    """Pack depthwise weights once for :func:`depthwise_conv2d`.

    Args:
        weight: int8, ``(C_out, KH, KW)``, ``(C_out, 1, KH, KW)`` (OIHW with groups = C_in,
            as PyTorch) or ``(groups, m, 1, KH, KW)`` (MegEngine grouped conv).
        bias: optional (C_out,) int32 on the accumulator's scale ``s_x * s_w``.
        multiplier: float32 scalar or (C_out,) requantization multipliers
            ``s_x * s_w[o] / s_y`` (:func:`megq.kernels.requantize_multiplier`). Required.
        in_channels: input channels C_in (default: C_out, i.e. multiplier 1; taken from the
            weight for the 5-D form).
        input_dtype / input_zero_point: the activations this layer will receive.
        narrow_range: require weights in [-127, 127]; ``False`` allows -128 (still exact).
        isa: pack for this ISA instead of the active one.
    """
    if not isinstance(weight, np.ndarray):
        raise TypeError(f"weight: expected a numpy int8 array, got {type(weight).__name__}")
    if weight.dtype != np.int8:
        raise TypeError(f"weight: expected dtype int8, got {weight.dtype}")
    dims_fit_int(weight, "weight")
    if weight.ndim == 5:
        if weight.shape[2] != 1:
            raise ValueError(f"weight: 5-D depthwise weights are (groups, m, 1, KH, KW), got {weight.shape}")
        groups = weight.shape[0]
        if in_channels is not None and int_arg(in_channels, "in_channels") != groups:
            raise ValueError(f"in_channels: {in_channels} != the weight's groups {groups}")
        in_channels = groups
        weight = weight.reshape(-1, weight.shape[3], weight.shape[4])
    elif weight.ndim == 4:
        if weight.shape[1] != 1:
            raise ValueError(f"weight: 4-D depthwise weights are (C_out, 1, KH, KW), got {weight.shape}")
        weight = weight[:, 0]
    elif weight.ndim != 3:
        raise ValueError(f"weight: expected (C_out, KH, KW), (C_out, 1, KH, KW) or (groups, m, 1, KH, KW), "
                         f"got {weight.ndim} dimension(s)")
    c_in = weight.shape[0] if in_channels is None else int_arg(in_channels, "in_channels")
    in_name = qdtype_arg(input_dtype, "input_dtype")
    z = zero_point_arg(input_zero_point, "input_zero_point", in_name)
    if multiplier is None:
        raise ValueError("multiplier: required (float32 requantization multipliers, scalar or per channel)")
    mult = np.atleast_1d(np.asarray(multiplier, dtype=np.float32))
    if mult.ndim != 1:
        raise ValueError(f"multiplier: expected a scalar or a 1-D array, got shape {mult.shape}")
    if bias is not None and not isinstance(bias, np.ndarray):
        raise TypeError(f"bias: expected a numpy int32 array, got {type(bias).__name__}")
    return _C.pack_depthwise_weights(weight, c_in, bias, mult, in_name == "int8", z, bool(narrow_range), isa)


def depthwise_conv2d(x: np.ndarray, packed: PackedDepthwiseWeights, stride=1, padding=0, dilation=1, *,
                     out_dtype="int8", out_zero_point: int = 0, out_min: Optional[int] = None,
                     out_max: Optional[int] = None) -> np.ndarray:
    """Depthwise conv of NHWC ``x`` (N, H, W, C_in) with packed weights; returns
    (N, OH, OW, C_out) ``out_dtype``. ``stride``, ``padding``, ``dilation``: int or (h, w).
    ``x`` may be a view with any strides (channel axis contiguous, else it is copied)."""
    x, _ = quantized_array(x, "x")
    if not isinstance(packed, PackedDepthwiseWeights):
        raise TypeError(f"packed: expected PackedDepthwiseWeights, got {type(packed).__name__}")
    od = qdtype_arg(out_dtype, "out_dtype")
    zo = zero_point_arg(out_zero_point, "out_zero_point", od)
    lo = None if out_min is None else int_arg(out_min, "out_min")
    hi = None if out_max is None else int_arg(out_max, "out_max")
    return _C.depthwise_conv2d(x, packed, _pair(stride, "stride"), _pair(padding, "padding"),
                               _pair(dilation, "dilation"), od, zo, lo, hi)
