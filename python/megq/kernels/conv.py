"""int8 2-D convolution on NHWC activations (built on the GEMM engine).

Contract (numpy form: :func:`megq.reference.conv2d`), for output pixel (n, oy, ox)
and output channel co of group g (``Cg = Cin / groups``)::

    acc = sum_{ky,kx,ci} (x[n, iy, ix, g*Cg + ci] - z_x) * w[co, ci, ky, kx] + bias[co]
    iy  = oy*stride_h - pad_h + ky*dilation_h        (taps in the padding add 0)
    y   = clamp(round_half_away(float32(acc) * M[co]) + z_y, lo, hi)

Weights are OIHW int8 (MegEngine/PyTorch layout), packed once; activations NHWC.
1x1 convolutions read the input in place; larger kernels gather cache-sized
tiles of patches (the full im2col matrix is never built).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from .. import _C
from ._checks import dtype_name, int_arg

PackedConv2dWeights = _C.PackedConv2dWeights

IntOrPair = Union[int, Sequence[int]]


def _pair(value: IntOrPair, argument: str) -> list[int]:
    values = [value] if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    if not isinstance(values, (list, tuple)) or len(values) not in (1, 2):
        raise TypeError(f"{argument}: expected an int or a pair of ints, got {value!r}")
    pair = [int_arg(v, argument) for v in values]
    for v in pair:  # the extension takes C ints
        if not -(1 << 30) < v < (1 << 30):
            raise ValueError(f"{argument}: {v} is out of range (|value| < 2^30)")
    return pair


def pack_conv2d_weights(weight: np.ndarray, bias: Optional[np.ndarray] = None, multiplier=None, *,
                        groups: int = 1, input_dtype="int8", input_zero_point: int = 0,
                        narrow_range: bool = True, isa: Optional[str] = None) -> PackedConv2dWeights:
    """Pack OIHW int8 weights ``(Cout, Cin/groups, kh, kw)`` once for :func:`conv2d`.

    ``bias`` (Cout,) int32 on the scale ``s_x * s_w``; ``multiplier`` float32 scalar or
    (Cout,) (see :func:`megq.kernels.requantize_multiplier`); the other arguments as in
    :func:`megq.kernels.pack_gemm_weights`.
    """
    if not isinstance(weight, np.ndarray):
        raise TypeError(f"weight: expected a numpy int8 array, got {type(weight).__name__}")
    if bias is not None and not isinstance(bias, np.ndarray):
        raise TypeError(f"bias: expected a numpy int32 array or None, got {type(bias).__name__}")
    input_signed = dtype_name(input_dtype, "input_dtype", ("int8", "uint8")) == "int8"
    if multiplier is not None:
        mult = np.atleast_1d(np.asarray(multiplier))
        if mult.dtype.kind not in "fiu":
            raise TypeError(f"multiplier: expected float32 value(s), got dtype {mult.dtype}")
        multiplier = np.ascontiguousarray(mult, dtype=np.float32)
    return _C.pack_conv2d_weights(weight, bias, multiplier, int_arg(groups, "groups"), input_signed,
                                  int_arg(input_zero_point, "input_zero_point"), bool(narrow_range), isa)


def conv2d(x: np.ndarray, packed: PackedConv2dWeights, *, stride: IntOrPair = 1, padding: IntOrPair = 0,
           dilation: IntOrPair = 1, out_dtype="int8", out_zero_point: int = 0, out_min: Optional[int] = None,
           out_max: Optional[int] = None) -> np.ndarray:
    """int8 convolution of NHWC ``x`` (N, H, W, Cin) with packed weights.

    ``stride``, ``padding`` (symmetric) and ``dilation`` are ints or (h, w) pairs.
    ``out_dtype``: "int8", "uint8" or "int32" (raw accumulator); ``out_min``/``out_max``
    fuse ReLU/ReLU6 (:func:`megq.kernels.relu_bounds`). Returns a new (N, OH, OW, Cout) array.
    ``x`` may be any view whose channel axis is contiguous.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x: expected a numpy array, got {type(x).__name__}")
    if not isinstance(packed, PackedConv2dWeights):
        raise TypeError(f"packed: expected PackedConv2dWeights from pack_conv2d_weights, got "
                        f"{type(packed).__name__}")
    out_name = dtype_name(out_dtype, "out_dtype", ("int8", "uint8", "int32"))
    lo = None if out_min is None else int_arg(out_min, "out_min")
    hi = None if out_max is None else int_arg(out_max, "out_max")
    return _C.conv2d(x, packed, _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation"),
                     out_name, int_arg(out_zero_point, "out_zero_point"), lo, hi)
