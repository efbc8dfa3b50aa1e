"""Argument checks shared by the kernel wrappers (errors name the argument)."""
from __future__ import annotations

import numpy as np

#: The C++ kernels take sizes and parameters as C ints.
_INT_MAX = 2**31 - 1


def dtype_name(dtype, argument: str, allowed: tuple[str, ...]) -> str:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"{argument}: expected one of {allowed}, got {dtype!r}") from None
    if name not in allowed:
        raise ValueError(f"{argument}: expected one of {allowed}, got {name!r}")
    return name


def int_arg(value, argument: str) -> int:
    """``value`` as a Python int that fits the C int the extension takes (TypeError for
    non-integers, ValueError naming ``argument`` beyond the int32 range)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{argument}: expected an int, got {type(value).__name__}")
    v = int(value)
    if not -_INT_MAX - 1 <= v <= _INT_MAX:
        raise ValueError(f"{argument}: {v} is out of range (megq's kernels take 32-bit ints)")
    return v





def dims_fit_int(array: np.ndarray, argument: str) -> None:
    """ValueError naming ``argument`` if a dimension exceeds the kernels' int sizes (a
    stride-0 view can be that large without memory behind it); the extension checks
    the same, this catches sizes a wrapper derives from the shape before calling it."""
    for axis, size in enumerate(array.shape):
        if size > _INT_MAX:
            raise ValueError(f"{argument}: dimension {axis} has size {size}, more than megq's kernels take "
                             f"(at most 2**31 - 1 = {_INT_MAX})")
