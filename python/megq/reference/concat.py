"""Channel concat contract (csrc/megq/concat.h), in numpy: each input requantized to the
output qparams (:func:`megq.reference.requantize_tensor`), then concatenated on the last axis."""
from __future__ import annotations

import numpy as np

from .quantize import requantize_tensor


def concat(inputs, scales, zero_points, out_scale, out_zero_point=0, out_dtype="int8") -> np.ndarray:
    parts = [requantize_tensor(x, s, z, out_scale, out_zero_point, out_dtype)
             for x, s, z in zip(inputs, scales, zero_points)]
    return np.concatenate(parts, axis=-1)
