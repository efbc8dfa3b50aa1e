"""Prepared kernel calls: every argument but the input checked once, then a cheap call per input.

A layer that runs the same packed weights with the same geometry and output quantization on many
inputs (the quantized ``Conv2d`` / ``Linear`` of a Q model, a benchmark loop) binds them once::

    packed = megq.kernels.pack_conv2d_weights(w, bias, multiplier, input_zero_point=z_x)
    conv = megq.kernels.prepare_conv2d(packed, stride=1, padding=1, out_zero_point=z_y)
    y = conv(x)            # same bytes as megq.kernels.conv2d(x, packed, stride=1, padding=1, out_zero_point=z_y)

``prepare_*`` checks the bound arguments by calling the documented wrapper (:func:`megq.kernels.gemm`,
:func:`~megq.kernels.conv2d`, :func:`~megq.kernels.depthwise_conv2d`) once on an empty batch: the same checks,
with the same errors, as a real call, and no arithmetic. The returned callable ``f(x)`` then only checks its
input, which the extension does as it reads it (array type, dtype the weights were packed for, rank,
channel or K count, contiguity of the innermost axis; TypeError / ValueError naming ``x`` or ``a``), and calls
the extension directly. The input's spatial size is checked per call too (a kernel larger than the padded input
raises ValueError).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _C
from .conv import PackedConv2dWeights, conv2d
from .depthwise import PackedDepthwiseWeights, depthwise_conv2d
from .gemm import PackedGemmWeights, gemm

__all__ = ["prepare_gemm", "prepare_conv2d", "prepare_depthwise_conv2d"]

IntOrPair = Union[int, Sequence[int]]
Kernel = Callable[[np.ndarray], np.ndarray]


def _pair_or_none(value: IntOrPair) -> Optional[Tuple[int, int]]:
    """``value`` (an int, or a sequence of one or two ints) as an (h, w) pair, or None when it is malformed (the
    wrapper then says why)."""
    values = [value] if not isinstance(value, (list, tuple)) else list(value)
    if len(values) not in (1, 2) or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values):
        return None
    return int(values[0]), int(values[-1])


def _probe(kernel: Tuple[int, int], channels: int, dtype: str, stride: IntOrPair, padding: IntOrPair,
           dilation: IntOrPair) -> np.ndarray:
    """An empty batch (N = 0) of the smallest spatial size for which this geometry has an output pixel."""
    size = []
    for axis in range(2):
        pad, dil = _pair_or_none(padding), _pair_or_none(dilation)
        extent = 1 if dil is None else dil[axis] * (kernel[axis] - 1) + 1
        size.append(max(1, extent - (0 if pad is None else 2 * pad[axis])))
    return np.empty((0, size[0], size[1], channels), dtype)


def _check_packed(packed: object, cls: type, packer: str) -> None:
    if not isinstance(packed, cls):
        raise TypeError(f"packed: expected {cls.__name__} from megq.kernels.{packer}, got {type(packed).__name__}")


def _reject_non_array(x: object, argument: str) -> None:
    raise TypeError(f"{argument}: expected a numpy array, got {type(x).__name__}")


def prepare_gemm(packed: PackedGemmWeights, *, out_dtype="int8", out_zero_point: int = 0,
                 out_min: Optional[int] = None, out_max: Optional[int] = None) -> Kernel:
    """``f(a)`` equal to ``gemm(a, packed, out_dtype=..., out_zero_point=..., out_min=..., out_max=...)``.

    Args: as :func:`megq.kernels.gemm`, checked now (TypeError / ValueError naming the argument).
    Returns: ``f(a: np.ndarray) -> np.ndarray`` for (M, K) activations of the dtype the weights were packed for.
    """
    _check_packed(packed, PackedGemmWeights, "pack_gemm_weights")
    gemm(np.empty((0, packed.K), packed.input_dtype), packed, out_dtype=out_dtype, out_zero_point=out_zero_point,
         out_min=out_min, out_max=out_max)
    # Valid now, so plain conversions give the values the wrapper passes on.
    args = (packed, np.dtype(out_dtype).name, int(out_zero_point), None if out_min is None else int(out_min),
            None if out_max is None else int(out_max))
    run = _C.gemm

    def prepared_gemm(a: np.ndarray) -> np.ndarray:
        if not isinstance(a, np.ndarray):
            _reject_non_array(a, "a")
        return run(a, *args)

    return prepared_gemm


def prepare_conv2d(packed: PackedConv2dWeights, *, stride: IntOrPair = 1, padding: IntOrPair = 0,
                   dilation: IntOrPair = 1, out_dtype="int8", out_zero_point: int = 0, out_min: Optional[int] = None,
                   out_max: Optional[int] = None) -> Kernel:
    """``f(x)`` equal to ``conv2d(x, packed, stride=..., padding=..., dilation=..., out_dtype=..., ...)``.

    Args: as :func:`megq.kernels.conv2d`, checked now (TypeError / ValueError naming the argument).
    Returns: ``f(x: np.ndarray) -> np.ndarray`` for NHWC (N, H, W, Cin) inputs, channel axis contiguous.
    """
    _check_packed(packed, PackedConv2dWeights, "pack_conv2d_weights")
    probe = _probe(tuple(packed.kernel_size), packed.in_channels, packed.input_dtype, stride, padding, dilation)
    conv2d(probe, packed, stride=stride, padding=padding, dilation=dilation, out_dtype=out_dtype,
           out_zero_point=out_zero_point, out_min=out_min, out_max=out_max)
    args = (packed, list(_pair_or_none(stride)), list(_pair_or_none(padding)), list(_pair_or_none(dilation)),
            np.dtype(out_dtype).name, int(out_zero_point), None if out_min is None else int(out_min),
            None if out_max is None else int(out_max))
    run = _C.conv2d

    def prepared_conv2d(x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            _reject_non_array(x, "x")
        return run(x, *args)

    return prepared_conv2d


def prepare_depthwise_conv2d(packed: PackedDepthwiseWeights, *, stride: IntOrPair = 1, padding: IntOrPair = 0,
                             dilation: IntOrPair = 1, out_dtype="int8", out_zero_point: int = 0,
                             out_min: Optional[int] = None, out_max: Optional[int] = None) -> Kernel:
    """``f(x)`` equal to ``depthwise_conv2d(x, packed, stride, padding, dilation, out_dtype=..., ...)``.

    Args: as :func:`megq.kernels.depthwise_conv2d`, checked now (TypeError / ValueError naming the argument).
    Returns: ``f(x: np.ndarray) -> np.ndarray`` for NHWC (N, H, W, C_in) inputs (any strides).
    """
    _check_packed(packed, PackedDepthwiseWeights, "pack_depthwise_weights")
    probe = _probe(tuple(packed.kernel_size), packed.in_channels, packed.input_dtype, stride, padding, dilation)
    depthwise_conv2d(probe, packed, stride, padding, dilation, out_dtype=out_dtype, out_zero_point=out_zero_point,
                     out_min=out_min, out_max=out_max)
    args = (packed, _pair_or_none(stride), _pair_or_none(padding), _pair_or_none(dilation),
            np.dtype(out_dtype).name, int(out_zero_point), None if out_min is None else int(out_min),
            None if out_max is None else int(out_max))
    run = _C.depthwise_conv2d

    def prepared_depthwise_conv2d(x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            _reject_non_array(x, "x")
        return run(x, *args)

    return prepared_depthwise_conv2d
