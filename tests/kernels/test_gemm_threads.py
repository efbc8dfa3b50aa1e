"""GEMM and conv2d task splitting, at sizes where it actually happens, and calls from several Python threads.

The GEMM driver (csrc/megq/gemm.cc) cuts C into row chunks x panel groups. The shapes below are chosen from its
thresholds so that each of these paths runs (checked by ``_plan`` below, which restates the driver's rules):

* packed weights above the "large weights" limit (8 MiB) with many rows: A rows converted per chunk within a
  2 MiB budget, several chunks, and panels split between tasks;
* many rows with ordinary weights: several 512 KiB row chunks, then more, smaller chunks so every thread has work;
* GEMV-like calls (1-3 rows): the panels are split between tasks;
* every split above 64K multiply-adds (below that everything runs on one thread).

Every result must be byte-identical to the numpy int64 oracle and across 1, 2, 3 and 4 kernel threads: each task
accumulates the full K of its outputs, so the split must never change a bit.
"""
from __future__ import annotations

import concurrent.futures as cf
import math

import numpy as np
import pytest

import megq.kernels as K
from oracles.conv import oracle_conv
from oracles.gemm import oracle_acc, oracle_requantize

THREADS = (1, 2, 3, 4)

# Restated from csrc/megq/gemm.cc so that the tests can say which path a shape takes.
_PARALLEL_MIN_MACS = 64 * 1024
_LARGE_WEIGHTS_BYTES = 8 * 1024 * 1024
_ROWS_BUDGET = {False: 512 * 1024, True: 2 * 1024 * 1024}
# (mr, nr, kr, weight bytes, converted-A bytes per K element) of each x86 GEMM layout (kernels/<isa>/gemm_<isa>.cc)
_LAYOUT = {"avx512vnni": (8, 32, 4, 1, 1), "avx2": (6, 16, 2, 2, 2), "scalar": (4, 8, 1, 1, 0)}


def _plan(isa, M, Kd, N):
    """(large_weights, row chunks before the thread split) the driver uses for this shape."""
    mr, nr, kr, wbytes, abytes = _LAYOUT[isa]
    kp = -(-Kd // kr) * kr
    panels = -(-N // nr)
    large = panels * kp * nr * wbytes > _LARGE_WEIGHTS_BYTES
    m_tiles = -(-M // mr)
    if abytes == 0:  # the scalar kernel reads A in place: one chunk
        return large, 1
    tiles_per_chunk = min(m_tiles, max(1, _ROWS_BUDGET[large] // (kp * abytes * mr)))
    return large, -(-m_tiles // tiles_per_chunk)


@pytest.fixture
def restore_threads():
    previous = K.get_num_threads()
    yield
    K.set_num_threads(previous)


class Case:
    """A GEMM problem with its oracle accumulators computed once (int64 products are the slow part)."""

    def __init__(self, M, Kd, N, a_dtype, a_zp, w_max, seed):
        rng = np.random.default_rng(seed)
        lo, hi = (-128, 127) if a_dtype == "int8" else (0, 255)
        self.a = rng.integers(lo, hi + 1, (M, Kd)).astype(a_dtype)
        self.w = rng.integers(-w_max, w_max + 1, (Kd, N)).astype(np.int8)
        self.bias = rng.integers(-50000, 50000, N).astype(np.int32)
        self.a_zp = a_zp
        self.acc = oracle_acc(self.a, self.w, self.bias, a_zero_point=a_zp)
        # multipliers that spread the accumulators over the int8 range, so saturation and rounding both occur
        spread = np.maximum(np.abs(self.acc).max(axis=0), 1).astype(np.float64)
        self.mult = (rng.uniform(60, 200, N) / spread).astype(np.float32)

    def want(self, **out):
        return oracle_requantize(self.acc, self.mult, **out)


_CASES = {}


def case(name):
    if name not in _CASES:
        _CASES[name] = Case(*SHAPES[name])
    return _CASES[name]


# name -> (M, K, N, a dtype, a zero point, max |w|, seed)
SHAPES = {
    # 12 MiB (VNNI) / 20 MiB (AVX2) of packed weights, 40 rows: 3 (VNNI) or 7 (AVX2) row chunks of the 2 MiB
    # budget, N tail of 8 columns. |a - z| <= 128 and |w| <= 127 keep K = 131072 inside the overflow proof.
    "large_weights_int8": (40, 131072, 72, "int8", 0, 127, 1),
    "large_weights_uint8": (21, 131072, 72, "uint8", 128, 127, 2),
    # uint8 with a small zero point: |a - z| reaches 252, so the weights stay small enough for the proof
    "large_weights_uint8_zp": (17, 131072, 72, "uint8", 3, 60, 3),
    # ordinary weights, 2100 rows: 5 (VNNI) / 9 (AVX2) row chunks of 512 KiB, M tail of 4 (VNNI) / 0 (AVX2) rows
    "many_rows": (2101, 1024, 70, "int8", -5, 127, 4),
    "many_rows_uint8": (1501, 700, 33, "uint8", 130, 127, 5),
    # GEMV-like: 4M multiply-adds over 1-3 rows, split between panel groups
    "gemv": (1, 4096, 1000, "int8", 0, 127, 6),
    "three_rows": (3, 2050, 517, "uint8", 77, 127, 7),
    # just above the 64K multiply-add threshold
    "threshold": (9, 130, 57, "int8", 1, 127, 8),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_gemm_split_exact_and_thread_independent(isa, restore_threads, name):
    c = case(name)
    M, Kd = c.a.shape
    N = c.w.shape[1]
    assert M * Kd * N > _PARALLEL_MIN_MACS
    large, chunks = _plan(isa, M, Kd, N)
    if name.startswith("large_weights"):
        assert large and (chunks > 1 or isa == "scalar"), (isa, large, chunks)
    if name.startswith("many_rows"):
        assert not large and (chunks > 1 or isa == "scalar"), (isa, large, chunks)
    packed = K.pack_gemm_weights(c.w, c.bias, c.mult, input_dtype=c.a.dtype, input_zero_point=c.a_zp)
    want8 = c.want(out_dtype="int8")
    want_u8 = c.want(out_dtype="uint8", out_zero_point=100)
    want32 = c.want(out_dtype="int32")
    for t in THREADS:
        K.set_num_threads(t)
        np.testing.assert_array_equal(K.gemm(c.a, packed, out_dtype="int32"), want32, err_msg=f"{t} threads")
        got8 = K.gemm(c.a, packed)
        np.testing.assert_array_equal(got8, want8, err_msg=f"{t} threads")
        np.testing.assert_array_equal(K.gemm(c.a, packed, out_dtype="uint8", out_zero_point=100), want_u8,
                                      err_msg=f"{t} threads")
    # the requantized outputs really use the range (a test whose outputs all saturate would prove little)
    assert len(np.unique(want8)) > 100 and 0 < (np.abs(want8.astype(int)) == 127).mean() < 0.5


def test_gemm_rows_taken_from_a_strided_view(isa, restore_threads):
    """Chunks of a view with a row stride (every second row of a larger array), many rows."""
    c = case("many_rows")
    big = np.repeat(c.a, 2, axis=0)
    big[1::2] = 0
    view = big[::2]
    assert not view.flags.c_contiguous
    packed = K.pack_gemm_weights(c.w, c.bias, c.mult, input_dtype=c.a.dtype, input_zero_point=c.a_zp)
    for t in THREADS:
        K.set_num_threads(t)
        np.testing.assert_array_equal(K.gemm(view, packed, out_dtype="int32"), c.want(out_dtype="int32"))


# (N, H, W, C_in, C_out, k, stride, padding, dilation, groups, x dtype, x zero point)
CONVS = [
    (2, 23, 21, 32, 48, 3, 1, 1, 1, 1, "int8", 0),      # im2col tiles, 2 x 483 pixels
    (1, 40, 37, 16, 40, 3, 2, 2, 2, 1, "uint8", 131),   # strided, dilated, padding reads the zero point
    (3, 18, 18, 64, 96, 1, 1, 0, 1, 1, "int8", -3),     # 1x1: one GEMM over the batch, read in place
    (2, 41, 39, 48, 64, 1, 2, 0, 1, 1, "uint8", 9),     # 1x1 stride 2: row-strided reads
    (2, 16, 17, 48, 48, 3, 1, 1, 1, 4, "int8", 5),      # groups
]


@pytest.mark.parametrize("spec", CONVS, ids=lambda s: "x".join(map(str, s[:6])) + f"_s{s[6]}p{s[7]}d{s[8]}g{s[9]}")
def test_conv2d_split_exact_and_thread_independent(isa, restore_threads, spec):
    n, h, w, cin, cout, k, stride, padding, dilation, groups, xd, zx = spec
    rng = np.random.default_rng(sum(spec[:6]))
    lo, hi = (-128, 127) if xd == "int8" else (0, 255)
    x = rng.integers(lo, hi + 1, (n, h, w, cin)).astype(xd)
    wt = rng.integers(-127, 128, (cout, cin // groups, k, k)).astype(np.int8)
    b = rng.integers(-3000, 3000, cout).astype(np.int32)
    m = (rng.uniform(0.5, 2, cout) / (40.0 * math.sqrt(k * k * cin / groups))).astype(np.float32)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    want = oracle_conv(x, wt, b, m, groups=groups, x_zero_point=zx, **kw)
    want32 = oracle_conv(x, wt, b, None, groups=groups, x_zero_point=zx, out_dtype="int32", **kw)
    assert want.size * (cin // groups) * k * k > 16 * _PARALLEL_MIN_MACS
    packed = K.pack_conv2d_weights(wt, b, m, groups=groups, input_dtype=xd, input_zero_point=zx)
    for t in THREADS:
        K.set_num_threads(t)
        np.testing.assert_array_equal(K.conv2d(x, packed, **kw), want, err_msg=f"{t} threads")
        np.testing.assert_array_equal(K.conv2d(x, packed, out_dtype="int32", **kw), want32, err_msg=f"{t} threads")
    assert len(np.unique(want)) > 100


def _concurrent_jobs(rng, shared_gemm, shared_conv):
    """Independent GEMM and conv2d problems; half of them share one packed object across threads."""
    jobs = []
    for i in range(16):
        if i % 2 == 0:
            M, Kd, N = int(rng.integers(50, 300)), int(rng.integers(200, 700)), int(rng.integers(20, 90))
            a = rng.integers(-128, 128, (M, Kd)).astype(np.int8)
            if i % 4 == 0:
                packed, w, b, m = shared_gemm
                a = rng.integers(-128, 128, (M, w.shape[0])).astype(np.int8)
            else:
                w = rng.integers(-127, 128, (Kd, N)).astype(np.int8)
                b = rng.integers(-2000, 2000, N).astype(np.int32)
                m = (rng.uniform(0.5, 2, N) / (40.0 * math.sqrt(Kd))).astype(np.float32)
                packed = K.pack_gemm_weights(w, b, m)
            jobs.append(("gemm", a, packed, oracle_requantize(oracle_acc(a, w, b), m)))
        else:
            if i % 4 == 1:
                packed, wt, b, m = shared_conv
            else:
                cout = int(rng.integers(8, 40))
                wt = rng.integers(-127, 128, (cout, 16, 3, 3)).astype(np.int8)
                b = rng.integers(-2000, 2000, cout).astype(np.int32)
                m = (rng.uniform(0.5, 2, cout) / (40.0 * math.sqrt(144))).astype(np.float32)
                packed = K.pack_conv2d_weights(wt, b, m)
            x = rng.integers(-128, 128, (int(rng.integers(1, 3)), int(rng.integers(12, 30)), 17, 16)).astype(np.int8)
            jobs.append(("conv", x, packed, oracle_conv(x, wt, b, m, padding=1)))
    return jobs


@pytest.mark.parametrize("kernel_threads", [1, 2, 4])
def test_calls_from_four_python_threads_at_once(isa, restore_threads, kernel_threads):
    """Kernels release the GIL; four Python threads call gemm/conv2d at once (the pool runs one caller's split
    and the others serially), sharing some packed weights. Every result must still match the oracle."""
    rng = np.random.default_rng(20)
    w = rng.integers(-127, 128, (512, 64)).astype(np.int8)
    b = rng.integers(-2000, 2000, 64).astype(np.int32)
    m = (rng.uniform(0.5, 2, 64) / (40.0 * math.sqrt(512))).astype(np.float32)
    shared_gemm = (K.pack_gemm_weights(w, b, m), w, b, m)
    wt = rng.integers(-127, 128, (24, 16, 3, 3)).astype(np.int8)
    bc = rng.integers(-2000, 2000, 24).astype(np.int32)
    mc = (rng.uniform(0.5, 2, 24) / (40.0 * 12)).astype(np.float32)
    shared_conv = (K.pack_conv2d_weights(wt, bc, mc), wt, bc, mc)
    jobs = _concurrent_jobs(rng, shared_gemm, shared_conv)
    K.set_num_threads(kernel_threads)

    def run(job):
        kind, inp, packed, _ = job
        outs = []
        for _ in range(6):  # repeat so that calls overlap in many ways
            outs.append(K.gemm(inp, packed) if kind == "gemm" else K.conv2d(inp, packed, padding=1))
        return outs

    with cf.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, jobs))
    for (kind, _, _, want), outs in zip(jobs, results):
        for got in outs:
            np.testing.assert_array_equal(got, want, err_msg=kind)
