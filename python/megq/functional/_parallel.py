"""Multi-threading for the float layer's big numpy operations.

numpy's element-wise loops and copies are single-threaded, and OpenBLAS's own threads busy-wait: when the machine
is shared (other processes on the cores) a multi-threaded OpenBLAS call can take 10x longer than a single-threaded
one. So, on first use, megq sets the OpenBLAS it finds in the process to one thread and splits the large
operations of convolution (the im2col gather and the matmuls) itself, along rows, over a small thread pool; numpy
releases the GIL inside both. ``MEGQ_FLOAT_THREADS`` sets the pool size (default: CPU count, at most 4);
``MEGQ_FLOAT_THREADS=1`` leaves BLAS threading alone and runs everything on the calling thread. If no OpenBLAS
control symbol is found (MKL, Accelerate), BLAS threading is left alone and only copies are split.
"""
from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

import numpy as np

_MIN_ELEMENTS = 1 << 19  # below ~2 MB the thread hand-off costs more than it saves
_STATE: dict = {}

_SET_THREADS_SYMBOLS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                        "openblas_set_num_threads64_", "openblas_set_num_threads")


def _single_thread_openblas() -> bool:
    """Set every OpenBLAS loaded in this process to 1 thread; True if at least one was found."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return False
    done = False
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SET_THREADS_SYMBOLS:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(1)
                done = True
                break
    return done


def _init() -> None:
    env = os.environ.get("MEGQ_FLOAT_THREADS")
    workers = int(env) if env else max(1, min(4, os.cpu_count() or 1))
    _STATE["workers"] = workers
    _STATE["pool"] = ThreadPoolExecutor(workers, thread_name_prefix="megq") if workers > 1 else None
    _STATE["split_matmul"] = workers > 1 and _single_thread_openblas()


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


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D operands, rows of ``a`` split across threads when large."""
    pool = _pool()
    if not _STATE["split_matmul"] or a.shape[0] * (a.shape[1] + b.shape[1]) < _MIN_ELEMENTS:
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]), np.result_type(a, b))
    r = _bounds(a.shape[0])
    futures = [pool.submit(np.matmul, a[lo:hi], b, out=out[lo:hi]) for lo, hi in zip(r[:-1], r[1:])]
    for f in futures:
        f.result()
    return out


def matmul_tn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a.T @ b`` (reduction over the long row axis), partial sums over row blocks computed in parallel."""
    pool = _pool()
    if not _STATE["split_matmul"] or a.shape[0] * (a.shape[1] + b.shape[1]) < _MIN_ELEMENTS:
        return a.T @ b
    r = _bounds(a.shape[0])
    parts = [f.result() for f in [pool.submit(lambda lo, hi: a[lo:hi].T @ b[lo:hi], lo, hi)
                                  for lo, hi in zip(r[:-1], r[1:])]]
    out = parts[0]
    for p in parts[1:]:
        out += p
    return out


def parallel_rows(fn, n: int, size: int) -> list:
    """Run ``fn(lo, hi)`` over row blocks ``[lo, hi)`` of ``range(n)`` on the pool when ``size`` (elements
    touched) is large, else once on the calling thread; returns the list of results in block order."""
    pool = _pool()
    if pool is None or size < _MIN_ELEMENTS or n < _STATE["workers"]:
        return [fn(0, n)]
    b = _bounds(n)
    return [f.result() for f in [pool.submit(fn, lo, hi) for lo, hi in zip(b[:-1], b[1:])]]
