"""``GradManager`` (MegEngine's autodiff entry point) and ``no_grad``.

Usage, as in MegEngine::

    gm = GradManager().attach(model.parameters())
    with gm:
        loss = F.cross_entropy(model(x), y)
        gm.backward(loss)          # fills param.grad (accumulating)
    opt.step(); opt.clear_grad()
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import numpy as np

from ._malloc import tune_malloc
from .tensor import _RECORDING, Tensor

__all__ = ["GradManager", "no_grad", "tune_malloc"]


class GradManager:
    """Records operations on attached tensors while active and back-propagates into their ``.grad``."""

    def __init__(self) -> None:
        self._attached: Dict[int, Tensor] = {}
        self._callbacks: Dict[int, List[Callable]] = {}
        self._recording = False

    def attach(self, params: Iterable[Tensor] | Tensor,
               callbacks: Optional[Iterable[Callable]] = None) -> "GradManager":
        """Track ``params``; after ``backward`` each gets ``.grad``. ``callbacks(param, grad) -> grad`` run first."""
        if isinstance(params, Tensor):
            params = [params]
        cbs = list(callbacks or [])
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"attach: params must be Tensors, got {type(p).__name__}")
            self._attached[id(p)] = p
            self._callbacks.setdefault(id(p), []).extend(cbs)
            p.requires_grad = True
        return self

    def attached_tensors(self) -> List[Tensor]:
        """The tensors attached so far."""
        return list(self._attached.values())

    def record(self) -> None:
        """Start recording (what ``with gm:`` does on entry)."""
        if self._recording:
            raise RuntimeError("GradManager is already recording")
        self._recording = True
        _RECORDING[0] += 1

    def release(self) -> None:
        """Stop recording (what ``with gm:`` does on exit)."""
        if self._recording:
            self._recording = False
            _RECORDING[0] -= 1

    def __enter__(self) -> "GradManager":
        self.record()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def backward(self, y: Tensor, dy: Any = None) -> None:
        """Back-propagate from ``y`` (default seed: ones) and accumulate into attached tensors' ``.grad``.

        The tape behind ``y`` is freed as it is consumed, so call ``backward`` once per forward.
        """
        if not isinstance(y, Tensor):
            raise TypeError(f"backward: y must be a Tensor, got {type(y).__name__}")
        seed = np.ones_like(y._data) if dy is None else np.asarray(dy._data if isinstance(dy, Tensor) else dy, y.dtype)
        if seed.shape != y.shape:
            raise ValueError(f"backward: dy shape {seed.shape} does not match y shape {y.shape}")
        order = _topological_order(y)
        grads: Dict[int, np.ndarray] = {id(y): seed}
        for t in order:  # outputs before inputs
            g = grads.pop(id(t), None)
            if g is None:
                continue
            if t._node is None:
                self._deliver(t, g)
                continue
            backward_fn, inputs = t._node
            t._node = None  # free the tape as we go
            in_grads = backward_fn(g)
            for x, gx in zip(inputs, in_grads):
                if gx is None or not isinstance(x, Tensor) or not x.requires_grad:
                    continue
                key = id(x)
                prev = grads.get(key)
                grads[key] = gx if prev is None else prev + gx
            if id(t) in self._attached:
                self._deliver(t, g)

    def _deliver(self, t: Tensor, g: np.ndarray) -> None:
        if id(t) not in self._attached:
            return
        if g.shape != t.shape:
            g = np.broadcast_to(g, t.shape)
        g = np.ascontiguousarray(g, dtype=t.dtype)
        for cb in self._callbacks.get(id(t), ()):
            g = np.asarray(cb(t, Tensor(g))._data)
        if t.grad is None:
            t.grad = Tensor(g.copy() if not g.flags.owndata else g)
        else:
            t.grad._data = t.grad._data + g


def _topological_order(y: Tensor) -> List[Tensor]:
    """Tensors reachable from ``y`` through the tape, each after every tensor that consumes it."""
    visited = set()
    post: List[Tensor] = []
    stack = [(y, False)]
    while stack:
        t, done = stack.pop()
        if done:
            post.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        if t._node is not None:
            for x in t._node[1]:
                if isinstance(x, Tensor) and x.requires_grad and id(x) not in visited:
                    stack.append((x, False))
    post.reverse()
    return post


@contextmanager
def no_grad() -> Iterator[None]:
    """Run code without recording, even inside ``with gm:`` (e.g. evaluation, BN folding)."""
    saved = _RECORDING[0]
    _RECORDING[0] = 0
    try:
        yield
    finally:
        _RECORDING[0] = saved
