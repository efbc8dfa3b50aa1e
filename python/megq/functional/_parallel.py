"""Multi-threading for the float layer's big numpy copies and row-wise reductions.

numpy's element-wise loops and copies are single-threaded, so megq splits the large ones (the im2col gather of
convolution, batch-norm's row passes) along rows over a small thread pool of its own; numpy releases the GIL inside
them. Matrix products are left whole to the BLAS numpy links, which threads them itself: megq never changes the
BLAS's settings. To cap the BLAS's threads (e.g. on a machine shared with other processes, where busy-waiting BLAS
threads can slow a product down many times), use the explicit, scoped :func:`megq.functional.limit_blas_threads`.

``MEGQ_FLOAT_THREADS`` sets megq's pool size (default: CPU count, at most 4); ``MEGQ_FLOAT_THREADS=1`` runs
everything on the calling thread.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional

import numpy as np

__all__ = ["limit_blas_threads", "parallel_copy", "parallel_rows"]

_MIN_ELEMENTS = 1 << 19  # below ~2 MB the thread hand-off costs more than it saves
_STATE: dict = {}


def _init() -> None:
    env = os.environ.get("MEGQ_FLOAT_THREADS")
    workers = int(env) if env else max(1, min(4, os.cpu_count() or 1))
    _STATE["workers"] = workers
    _STATE["pool"] = ThreadPoolExecutor(workers, thread_name_prefix="megq") if workers > 1 else None


def _pool() -> Optional[ThreadPoolExecutor]:
    if not _STATE:
        _init()
    return _STATE["pool"]


def _bounds(n: int) -> List[int]:
    return [int(b) for b in np.linspace(0, n, _STATE["workers"] + 1)]


def parallel_copy(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src`` (same shape), split along axis 0 across threads when large."""
    pool = _pool()
    if pool is None or dst.size < _MIN_ELEMENTS or dst.shape[0] < _STATE["workers"]:
        np.copyto(dst, src)
        return
    b = _bounds(dst.shape[0])
    for f in [pool.submit(np.copyto, dst[lo:hi], src[lo:hi]) for lo, hi in zip(b[:-1], b[1:])]:
        f.result()


def parallel_rows(fn: Callable[[int, int], object], n: int, size: int) -> list:
    """Run ``fn(lo, hi)`` over row blocks ``[lo, hi)`` of ``range(n)`` on the pool when ``size`` (elements
    touched) is large, else once on the calling thread; returns the list of results in block order."""
    pool = _pool()
    if pool is None or size < _MIN_ELEMENTS or n < _STATE["workers"]:
        return [fn(0, n)]
    b = _bounds(n)
    return [f.result() for f in [pool.submit(fn, lo, hi) for lo, hi in zip(b[:-1], b[1:])]]


_BLAS: dict = {}


@contextmanager
def blas_threads_as_megq() -> Iterator[None]:
    """Inside the block the BLAS uses ``megq.get_num_threads()`` threads (what a float layer left in a Q model
    runs under, so ``megq.set_num_threads`` governs the whole Q model). One threadpoolctl controller is made at the
    first use and reused (making one scans the loaded libraries: about 2 ms; switching with it: about 30 us).
    Without threadpoolctl the BLAS keeps its own setting."""
    ctl = _BLAS.get("controller", False)
    if ctl is False:
        try:
            from threadpoolctl import ThreadpoolController

            ctl = ThreadpoolController()
        except ImportError:
            ctl = None
        _BLAS["controller"] = ctl
    if ctl is None:
        yield
        return
    from ..kernels import get_num_threads

    with ctl.limit(limits=int(get_num_threads()), user_api="blas"):
        yield


@contextmanager
def limit_blas_threads(n: int) -> Iterator[None]:
    """``with megq.functional.limit_blas_threads(1): ...`` caps the threads of every BLAS library loaded in the
    process (OpenBLAS, MKL, BLIS, ...) at ``n`` inside the block and restores the previous settings on exit.

    megq never changes BLAS threading on its own; this is the explicit, scoped way to do it. It is built on
    threadpoolctl (https://github.com/joblib/threadpoolctl), an optional dependency: ``pip install threadpoolctl``.
    The limit is process-wide while the block runs (BLAS libraries keep one setting for all threads).

    Raises:
        TypeError / ValueError: ``n`` is not an int >= 1.
        ImportError: threadpoolctl is not installed.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n: expected an int >= 1, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected an int >= 1, got {n}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError as e:
        raise ImportError("limit_blas_threads needs threadpoolctl: pip install threadpoolctl") from e
    with threadpool_limits(limits=int(n), user_api="blas"):
        yield
