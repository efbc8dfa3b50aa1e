"""Global random state for weight init, dropout and data shuffling defaults (``megq.random.seed``)."""
from __future__ import annotations

import numpy as np

__all__ = ["seed", "get_rng"]

_RNG = [np.random.default_rng()]


def seed(value: int) -> None:
    """Re-seed megq's global generator (weight init, dropout)."""
    _RNG[0] = np.random.default_rng(value)


def get_rng() -> np.random.Generator:
    """The global ``numpy.random.Generator`` used by megq."""
    return _RNG[0]
