"""Channel (last-axis) concat of quantized tensors with different qparams.

Contract (numpy form: :func:`megq.reference.concat`): each input ``i`` is requantized to the
output's qparams, ``clamp(round_half_away(float32(x_i - z_i) * M_i) + z_o)`` with
``M_i = float32(s_i) / float32(s_o)`` (as :func:`megq.kernels.requantize`), and placed at its
channel offset. Inputs whose qparams and dtype equal the output's are copied exactly.
Inputs: int8/uint8 arrays (NHWC, or any rank) equal in every axis but the last.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import _C
from .quantize import qdtype_arg, quantized_array, scale_arg, zero_point_arg


def concat(inputs: Sequence[np.ndarray], scales: Sequence, zero_points: Sequence[int] | None = None, *,
           out_scale, out_zero_point: int = 0, out_dtype=None) -> np.ndarray:
    """Concatenate ``inputs`` along the last (channel) axis into one tensor with qparams
    ``(out_scale, out_zero_point)`` and ``out_dtype`` (default: the first input's dtype).

    ``scales`` / ``zero_points``: one per input (zero points default to 0).
    """
    if isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)):
        raise TypeError(f"inputs: expected a list of arrays, got {type(inputs).__name__}")
    if len(inputs) == 0:
        raise ValueError("inputs: expected at least one tensor")
    names = [quantized_array(x, f"inputs[{i}]")[1] for i, x in enumerate(inputs)]
    if zero_points is None:
        zero_points = [0] * len(inputs)
    if not isinstance(scales, (list, tuple, np.ndarray)) or len(scales) != len(inputs):
        raise ValueError(f"scales: expected {len(inputs)} values (one per input), got {scales!r}")
    if not isinstance(zero_points, (list, tuple, np.ndarray)) or len(zero_points) != len(inputs):
        raise ValueError(f"zero_points: expected {len(inputs)} values (one per input), got {zero_points!r}")
    out_name = names[0] if out_dtype is None else qdtype_arg(out_dtype, "out_dtype")
    s = [scale_arg(v, f"scales[{i}]") for i, v in enumerate(scales)]
    z = [zero_point_arg(v, f"zero_points[{i}]", n) for i, (v, n) in enumerate(zip(zero_points, names))]
    return _C.concat(list(inputs), s, z, scale_arg(out_scale, "out_scale"),
                     zero_point_arg(out_zero_point, "out_zero_point", out_name), out_name)
