"""Progress bar: tqdm when installed, otherwise the plain iterable (no output)."""
from __future__ import annotations

from typing import Iterable, Optional, TypeVar

__all__ = ["progress"]

T = TypeVar("T")


def progress(iterable: Iterable[T], total: Optional[int] = None, desc: Optional[str] = None,
             disable: bool = False) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar if tqdm is importable and ``disable`` is False."""
    if disable:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False)
