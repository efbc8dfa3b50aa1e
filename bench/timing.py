"""Timing helpers for the benchmark runners: median latency with warm-up and
call grouping, plus a guard that measures how much CPU *other* processes took
while we measured (the machine is shared; see /proc/stat)."""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat() -> Optional[tuple]:
    """(busy_seconds, steal_seconds) of the whole machine, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    v = [int(x) for x in fields[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    steal = v[7] if len(v) > 7 else 0
    return busy / _HZ, steal / _HZ


class CpuGuard:
    """Measures the cores used by other processes (and steal) over a window.

    ``other_cores`` = (machine busy CPU time - this process's CPU time) / wall time.
    Resolution is one clock tick (10 ms), so only windows of >= ~0.2 s mean much.
    """

    def __init__(self) -> None:
        self._start = None

    def start(self) -> "CpuGuard":
        self._start = (time.perf_counter(), time.process_time(), _proc_stat())
        return self

    def stop(self) -> dict:
        wall0, own0, st0 = self._start
        wall, own, st = time.perf_counter() - wall0, time.process_time() - own0, _proc_stat()
        if st is None or st0 is None or wall <= 0:
            return {"other_cores": float("nan"), "steal_cores": float("nan"), "wall": wall}
        busy = st[0] - st0[0]
        return {"other_cores": max(0.0, busy - own) / wall, "steal_cores": (st[1] - st0[1]) / wall, "wall": wall}


def other_load(seconds: float = 0.5) -> float:
    """Cores used by other processes during a quiet ``seconds`` sleep."""
    g = CpuGuard().start()
    time.sleep(seconds)
    return g.stop()["other_cores"]


def wait_until_idle(threshold: float = 0.15, timeout: float = 60.0, probe: float = 0.5) -> float:
    """Waits (up to ``timeout`` s) until other processes use < ``threshold`` cores.
    Returns the last observed load."""
    deadline = time.perf_counter() + timeout
    load = other_load(probe)
    while load >= threshold and time.perf_counter() < deadline:
        load = other_load(probe)
    return load


@dataclass
class Timing:
    """Per-call latencies (seconds) of the samples, one entry per sample."""

    samples: List[float] = field(default_factory=list)
    calls_per_sample: int = 1
    other_cores: float = 0.0
    steal_cores: float = 0.0
    wall: float = 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    def merge(self, other: "Timing") -> None:
        total = self.wall + other.wall
        if total > 0:
            self.other_cores = (self.other_cores * self.wall + other.other_cores * other.wall) / total
            self.steal_cores = (self.steal_cores * self.wall + other.steal_cores * other.wall) / total
        self.wall = total
        self.samples.extend(other.samples)
        self.calls_per_sample = max(self.calls_per_sample, other.calls_per_sample)


def calls_for(fn: Callable[[], object], min_sample_s: float) -> int:
    """How many calls make one sample last at least ``min_sample_s``."""
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    n = 1
    while dt * n < min_sample_s and n < 1 << 20:
        n *= 2
    if n > 1:  # re-estimate with a group, single calls are noisy
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = (time.perf_counter() - t0) / n
        n = max(1, int(min_sample_s / dt + 0.999)) if dt > 0 else n
    return n


def measure(fn: Callable[[], object], *, warmup_s: float = 0.2, min_samples: int = 15,
            target_s: float = 0.8, min_sample_s: float = 2e-3, max_samples: int = 1000,
            calls: Optional[int] = None, skip_first: bool = False) -> Timing:
    """Warm up for ``warmup_s``, then take samples (each a group of ``calls``
    back-to-back calls lasting >= ``min_sample_s``) until both ``min_samples``
    and ``target_s`` are reached. Returns per-call latencies per sample.
    ``skip_first``: no warm-up call at all (the caller has just run ``fn``)."""
    end = time.perf_counter() + warmup_s
    if not skip_first:
        fn()
    while time.perf_counter() < end:
        fn()
    n = calls if calls is not None else calls_for(fn, min_sample_s)
    t = Timing(calls_per_sample=n)
    guard = CpuGuard().start()
    start = time.perf_counter()
    perf = time.perf_counter
    while True:
        t0 = perf()
        for _ in range(n):
            fn()
        t.samples.append((perf() - t0) / n)
        k = len(t.samples)
        if k >= max_samples or (k >= min_samples and perf() - start >= target_s):
            break
    g = guard.stop()
    t.other_cores, t.steal_cores, t.wall = g["other_cores"], g["steal_cores"], g["wall"]
    return t
