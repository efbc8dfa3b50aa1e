"""Sequential container."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator, Union

from .module import Module

__all__ = ["Sequential"]


class Sequential(Module):
    """Runs its children in order. Children are named "0", "1", ... (or by the keys of an OrderedDict)."""

    def __init__(self, *modules: Union[Module, "OrderedDict[str, Module]"], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        self._order = []
        for key, m in items:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: every element must be a Module, got {type(m).__name__} at {key!r}")
            setattr(self, key, m)
            self._order.append(key)

    def __getitem__(self, idx: Union[int, slice]) -> Any:
        if isinstance(idx, slice):
            return Sequential(OrderedDict((k, getattr(self, k)) for k in self._order[idx]))
        return getattr(self, self._order[idx])

    def __setitem__(self, idx: int, module: Module) -> None:
        setattr(self, self._order[idx], module)

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[Module]:
        return (getattr(self, k) for k in self._order)

    def forward(self, x: Any) -> Any:
        for k in self._order:
            x = getattr(self, k)(x)
        return x
