"""Argument validation shared by module constructors (errors name the offending argument)."""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np


def positive_int(value: Any, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{owner}: {name} must be positive, got {value}")
    return int(value)


def int_pair(value: Any, name: str, owner: str, minimum: int = 0) -> Tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in value):
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value!r}")
    return int(value[0]), int(value[1])
