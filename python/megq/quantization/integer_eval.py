"""Registry of exact integer eval forwards for QAT modules (filled by the quantized layer).

When a QAT module runs in eval mode (``not module.training``), ``integer_eval_enabled()`` is true, its type (or a
base class in its MRO) is registered here, its fake quants are enabled and none of its observers is collecting
statistics, ``QATModule.__call__`` calls ``INTEGER_FORWARD[cls](module, *inputs, **kwargs)`` instead of the float
fake-quant ``forward`` (forward pre-hooks and hooks still run around it).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Optional

__all__ = ["INTEGER_FORWARD", "register_integer_forward", "integer_eval_enabled", "set_integer_eval",
           "lookup_integer_forward", "integer_eval"]

INTEGER_FORWARD: Dict[type, Callable] = {}

_ENABLED = [True]


def register_integer_forward(cls: type) -> Callable[[Callable], Callable]:
    """Decorator: ``@register_integer_forward(qat.Conv2d) def fn(module, x): ...`` registers ``fn`` for ``cls``."""
    if not isinstance(cls, type):
        raise TypeError(f"register_integer_forward: expected a class, got {cls!r}")

    def deco(fn: Callable) -> Callable:
        INTEGER_FORWARD[cls] = fn
        return fn

    return deco


def integer_eval_enabled() -> bool:
    """Whether eval-mode QAT modules use registered integer forwards (default True)."""
    return _ENABLED[0]


def set_integer_eval(enabled: bool) -> bool:
    """Turn the integer eval path on or off globally; returns the previous setting."""
    prev = _ENABLED[0]
    _ENABLED[0] = bool(enabled)
    return prev


@contextmanager
def integer_eval(enabled: bool) -> Iterator[None]:
    """``with integer_eval(False): ...`` runs the float fake-quant eval path inside the block."""
    prev = set_integer_eval(enabled)
    try:
        yield
    finally:
        set_integer_eval(prev)


def lookup_integer_forward(cls: type) -> Optional[Callable]:
    """The forward registered for ``cls`` or the nearest class in its MRO, or None."""
    if not INTEGER_FORWARD:
        return None
    for c in cls.__mro__:
        fn = INTEGER_FORWARD.get(c)
        if fn is not None:
            return fn
    return None
