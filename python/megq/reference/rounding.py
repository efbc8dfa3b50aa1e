"""Rounding rule used everywhere in megq: round half away from zero (C ``roundf``)."""
from __future__ import annotations

import numpy as np


def round_half_away_from_zero(x: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest integer, ties away from zero, in float32.

    Truncate, then step one away from zero where the dropped fraction is at least
    one half; ``x - trunc(x)`` is exact in float32. (``floor(x + 0.5)`` would be
    wrong for 0.49999997f, whose sum with 0.5 rounds up to 1.0.)
    """
    x = np.asarray(x, dtype=np.float32)
    t = np.trunc(x)
    frac = x - t
    return (t + (frac >= 0.5) - (frac <= -0.5)).astype(np.float32)
