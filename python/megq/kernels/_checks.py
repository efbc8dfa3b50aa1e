"""Argument checks shared by the kernel wrappers (errors name the argument)."""
from __future__ import annotations

import numpy as np


def dtype_name(dtype, argument: str, allowed: tuple[str, ...]) -> str:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"{argument}: expected one of {allowed}, got {dtype!r}") from None
    if name not in allowed:
        raise ValueError(f"{argument}: expected one of {allowed}, got {name!r}")
    return name


def int_arg(value, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{argument}: expected an int, got {type(value).__name__}")
    return int(value)


