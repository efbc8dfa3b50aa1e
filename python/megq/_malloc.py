"""Keep freed memory in the process heap during training (glibc only).

Training allocates and frees the same large numpy buffers (im2col matrices, activations, gradients) every
iteration. By default glibc serves blocks above 128 KiB-32 MiB with fresh ``mmap`` pages and returns freed memory
to the OS, so every iteration pays page faults to zero that memory again: about 25% of a ResNet-8 step here.
Raising the mmap and trim thresholds lets the heap reuse those pages. This changes the whole process's allocator, so
megq never does it on its own: an application that owns its process calls :func:`megq.autodiff.tune_malloc` once
before training (megq's own commands, demo and benchmarks do); ``MEGQ_NO_MALLOC_TUNING=1`` makes the call a no-op.
A no-op on non-glibc platforms.
"""
from __future__ import annotations

import ctypes
import os
import sys

_DONE = [False]

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_malloc() -> bool:
    """Raise glibc's mmap/trim thresholds for the whole process, once (see the module docstring); returns True if
    they were applied (now or before)."""
    if _DONE[0]:
        return True
    _DONE[0] = True
    if os.environ.get("MEGQ_NO_MALLOC_TUNING") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's maximum (on 64-bit)
    ok &= mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    ok &= mallopt(_M_TOP_PAD, 64 << 20)
    return bool(ok)
