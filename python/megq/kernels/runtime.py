"""ISA selection, CPU features, threads, limits and peak measurement for megq's kernels.

The best path built and supported by the CPU is used; the environment variable
``MEGQ_ISA`` or :func:`set_isa` forces a lower one. ``MEGQ_NUM_THREADS`` sets the
default thread count.

Both variables are read when the extension ``megq._C`` is imported, and checked
strictly: an unknown ``MEGQ_ISA`` name (allowed: ``scalar``, ``avx2``, ``avx512vnni``,
``neon``, ``neondot``) or a ``MEGQ_NUM_THREADS`` that is not a plain decimal integer
in ``[1, MAX_NUM_THREADS]`` makes that import fail with ImportError naming the
variable. An empty value means unset. A known ISA this CPU cannot run falls back to
the best usable one with a message on stderr.
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator, Optional

import numpy as np

from .. import _C

#: Largest thread count :func:`set_num_threads` and ``MEGQ_NUM_THREADS`` accept. The
#: default (the CPU count) is capped at it too.
MAX_NUM_THREADS: int = _C.MAX_NUM_THREADS

#: No kernel returns an output larger than this many bytes (1 GiB); larger requests
#: (e.g. a huge padding, or a stride-0 view describing a huge input) raise ValueError
#: before anything is allocated. It also keeps every element count within the
#: kernels' int sizes.
MAX_OUTPUT_BYTES: int = _C.MAX_OUTPUT_BYTES


def cpu_info() -> dict:
    """What the CPU offers, what megq was built with, and which path runs.

    Keys: ``features`` (dict of detected CPU features), ``built``, ``usable`` (ISA
    names), ``best`` (what megq would pick) and ``active`` (what it uses now).
    """
    return {
        "features": _C.cpu_features(),
        "built": list(_C.built_isas()),
        "usable": list(_C.usable_isas()),
        "best": _C.best_isa(),
        "active": _C.active_isa(),
    }


def active_isa() -> str:
    """Name of the ISA new kernel calls and packs use."""
    return _C.active_isa()


def set_isa(name: Optional[str]) -> None:
    """Force an ISA path (``"scalar"``, ``"avx2"``, ``"avx512vnni"``, ``"neon"``,
    ``"neondot"``); ``None`` restores the best one. Raises ValueError if the path is
    unknown or not usable on this CPU. Meant for tests and diagnosis."""
    _C.set_active_isa(_C.best_isa() if name is None else str(name))


@contextlib.contextmanager
def use_isa(name: str) -> Iterator[None]:
    """Context manager form of :func:`set_isa` that restores the previous path."""
    previous = _C.active_isa()
    _C.set_active_isa(name)
    try:
        yield
    finally:
        _C.set_active_isa(previous)


def get_num_threads() -> int:
    """Threads the kernels use (including the caller)."""
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the kernels' thread count, ``1 <= n <= MAX_NUM_THREADS`` (ValueError
    otherwise). Results do not depend on it."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n: expected an int >= 1, got {type(n).__name__}")
    if not 1 <= int(n) <= MAX_NUM_THREADS:
        raise ValueError(f"n: expected a thread count >= 1 and <= {MAX_NUM_THREADS}, got {int(n)}")
    _C.set_num_threads(int(n))


def measure_peak_gops(isa: Optional[str] = None, seconds: float = 0.2) -> float:
    """Measure one thread's peak int8 rate (GOPS, 2 ops per multiply-add) of an ISA's
    multiply-accumulate instruction (vpdpbusd for avx512vnni, vpmaddwd+vpaddd for avx2,
    sdot for neondot) on independent registers. Returns 0.0 for the scalar path."""
    name = _C.active_isa() if isa is None else isa
    iterations = 1 << 14
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        ops = _C.run_peak_loop(name, iterations)
        elapsed = time.perf_counter() - start
        if ops == 0:
            return 0.0
        if elapsed < 0.01:
            iterations *= 4
            continue
        best = max(best, ops / elapsed / 1e9)
        if time.perf_counter() > deadline:
            return best
