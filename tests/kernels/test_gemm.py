"""megq.kernels.gemm against an independent numpy oracle, bit for bit, on every ISA path."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import megq.kernels as megq_kernels
from megq import reference
from oracles.gemm import oracle_gemm

K = megq_kernels


def make_case(rng, M, N, Kd, *, a_dtype="int8", per_channel=True, bias=True):
    lo, hi = (-128, 127) if a_dtype == "int8" else (0, 255)
    a = rng.integers(lo, hi + 1, (M, Kd)).astype(a_dtype)
    w = rng.integers(-127, 128, (Kd, N)).astype(np.int8)
    b = rng.integers(-5000, 5000, N).astype(np.int32) if bias else None
    scale = 1.0 / (np.sqrt(Kd) * 64.0)
    m = (rng.uniform(0.5, 2.0, N) * scale).astype(np.float32) if per_channel else np.float32(scale)
    return a, w, b, m


def run_and_check(a, w, b, m, *, a_zero_point=0, out_dtype="int8", out_zero_point=0, out_min=None,
                  out_max=None, narrow_range=True):
    packed = K.pack_gemm_weights(w, b, m, input_dtype=a.dtype, input_zero_point=a_zero_point,
                                 narrow_range=narrow_range)
    got = K.gemm(a, packed, out_dtype=out_dtype, out_zero_point=out_zero_point, out_min=out_min,
                 out_max=out_max)
    want = oracle_gemm(a, w, b, m, a_zero_point=a_zero_point, out_dtype=out_dtype,
                       out_zero_point=out_zero_point, out_min=out_min, out_max=out_max)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    return got


# Every tail of each dimension 1..33, the other two at small, odd and larger sizes.
SWEEP = sorted({(d, n, k) for d in range(1, 34) for (n, k) in [(1, 1), (17, 33), (33, 7), (40, 70)]}
               | {(m, d, k) for d in range(1, 34) for (m, k) in [(1, 1), (9, 33), (13, 5), (3, 68)]}
               | {(m, n, d) for d in range(1, 34) for (m, n) in [(1, 1), (7, 33), (9, 16), (17, 65)]})


def test_every_tail_of_m_n_k(isa, threads):
    rng = np.random.default_rng(1)
    for M, N, Kd in SWEEP:
        a, w, b, m = make_case(rng, M, N, Kd)
        run_and_check(a, w, b, m)


def test_random_cube_1_to_33(isa):
    rng = np.random.default_rng(2)
    for _ in range(150):
        M, N, Kd = rng.integers(1, 34, 3)
        a, w, b, m = make_case(rng, M, N, Kd, a_dtype=rng.choice(["int8", "uint8"]))
        zp = int(rng.integers(0, 256)) if a.dtype == np.uint8 else int(rng.integers(-128, 128))
        run_and_check(a, w, b, m, a_zero_point=zp, out_dtype=str(rng.choice(["int8", "uint8", "int32"])),
                      out_zero_point=0)


@pytest.mark.parametrize("shape", [(67, 129, 300), (1, 1000, 512), (200, 70, 1153), (49, 512, 1030),
                                   (300, 33, 2), (5, 2000, 40)])
@pytest.mark.parametrize("a_dtype,a_zp", [("int8", 0), ("int8", -7), ("uint8", 128), ("uint8", 3)])
def test_larger_and_odd_shapes(isa, threads, shape, a_dtype, a_zp):
    rng = np.random.default_rng(3)
    a, w, b, m = make_case(rng, *shape, a_dtype=a_dtype)
    run_and_check(a, w, b, m, a_zero_point=a_zp)
    run_and_check(a, w, b, m, a_zero_point=a_zp, out_dtype="uint8", out_zero_point=100)
    run_and_check(a, w, b, None, a_zero_point=a_zp, out_dtype="int32")


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("out_dtype,out_zp", [("int8", 0), ("int8", -20), ("uint8", 0), ("uint8", 128)])
def test_per_tensor_and_per_channel_outputs(isa, per_channel, out_dtype, out_zp):
    rng = np.random.default_rng(4)
    a, w, b, m = make_case(rng, 37, 45, 99, per_channel=per_channel)
    run_and_check(a, w, b, m, out_dtype=out_dtype, out_zero_point=out_zp)
    run_and_check(a, w, None, m, out_dtype=out_dtype, out_zero_point=out_zp)


def test_strided_views(isa, threads):
    rng = np.random.default_rng(5)
    big = rng.integers(-128, 128, (120, 300)).astype(np.int8)
    w = rng.integers(-127, 128, (77, 50)).astype(np.int8)
    m = np.float32(1e-3)
    for a in (big[3:40, 5:82], big[::3, 100:177], big[::-2, 1:78]):
        assert not a.flags.c_contiguous
        run_and_check(a, w, None, m)
    # Weight views: a column block of a larger matrix, and every other row.
    wbig = rng.integers(-127, 128, (160, 90)).astype(np.int8)
    a = big[:20, :80].copy()
    for wv in (wbig[:80, 10:47], wbig[::2, :33]):
        run_and_check(a, wv, None, m)


def test_extremes_that_break_vpmaddubsw(isa, threads):
    """All -128 / 127 activations against +-127 and -128 weights: int16 pair sums overflow."""
    for a_val, w_val in itertools.product([-128, 127], [127, -127, -128]):
        a = np.full((9, 515), a_val, np.int8)
        w = np.full((515, 40), w_val, np.int8)
        run_and_check(a, w, None, None, out_dtype="int32", narrow_range=False)
    for a_val, zp, w_val in [(255, 0, -128), (0, 255, -128), (255, 0, 127), (0, 255, 127)]:
        a = np.full((5, 260), a_val, np.uint8)
        w = np.full((260, 33), w_val, np.int8)
        run_and_check(a, w, None, None, a_zero_point=zp, out_dtype="int32", narrow_range=False)
    rng = np.random.default_rng(6)
    a = rng.choice(np.array([-128, 127], np.int8), (31, 301))
    w = rng.choice(np.array([-128, 127, -127], np.int8), (301, 47))
    run_and_check(a, w, None, None, out_dtype="int32", narrow_range=False)


def test_deepest_safe_k_is_exact(isa):
    Kd = K.MAX_SAFE_K
    a = np.full((2, Kd), -128, np.int8)
    w = np.full((Kd, 3), -127, np.int8)
    w[:, 1] = 127
    run_and_check(a, w, None, None, out_dtype="int32")


def test_overflowing_depth_is_refused():
    Kd = K.MAX_SAFE_K + 1
    w = np.full((Kd, 2), 127, np.int8)
    with pytest.raises(ValueError, match="weight: K=.*overflow"):
        K.pack_gemm_weights(w)
    # The same depth is fine when the actual weights cannot overflow.
    w[: Kd // 2] = 0
    K.pack_gemm_weights(w)
    # A bias that pushes a column over the limit is refused too.
    with pytest.raises(ValueError, match="overflow"):
        K.pack_gemm_weights(np.full((4, 1), 127, np.int8), np.array([2**31 - 1000], np.int32))


def test_rounding_ties_and_multiplier_extremes(isa):
    acc_values = np.arange(-300, 301, dtype=np.int32)
    Kd = 1
    a = acc_values.astype(np.int64).clip(-128, 127).astype(np.int8).reshape(-1, 1)
    w = np.ones((Kd, 1), np.int8)
    for mult in [0.5, 0.25, 1.5, 0.49999997, 0.50000006, 1e-30, 1e30, 3.4e38, 1.4e-45]:
        run_and_check(a, w, None, np.float32(mult))
        run_and_check(a, w, None, np.float32(mult), out_dtype="uint8", out_zero_point=128)
        # Clamp bounds inside the range, hit from far outside it (including -inf and +inf products).
        run_and_check(a, w, None, np.float32(mult), out_zero_point=3, out_min=-5, out_max=7)
        run_and_check(a, w, None, np.float32(mult), out_dtype="uint8", out_zero_point=128, out_min=130,
                      out_max=200)
    # acc = 1 with M = 0.49999997f gives 0.49999997, which rounds to 0 (not 1).
    got = K.gemm(np.ones((1, 1), np.int8), K.pack_gemm_weights(np.ones((1, 1), np.int8), None,
                                                                 np.float32(0.49999997)))
    assert got[0, 0] == 0
    # Ties away from zero in both directions: +-0.5 -> +-1, +-2.5 -> +-3.
    a = np.array([[1], [-1], [5], [-5]], np.int8)
    got = K.gemm(a, K.pack_gemm_weights(np.ones((1, 1), np.int8), None, np.float32(0.5)))
    np.testing.assert_array_equal(got[:, 0], [1, -1, 3, -3])


# Output configurations of the requantizing epilogue: (out_dtype, zero point, out_min, out_max). They
# cover ReLU-style lower bounds at or above the zero point (negative values may round either way, they
# clamp), bounds below it (rounding half away from zero on both sides), zero point 0 and not, uint8.
EPILOGUES = [("int8", 0, None, None), ("int8", 0, 0, 120), ("int8", -3, -3, 127), ("int8", 7, -100, 50),
             ("uint8", 128, None, None), ("uint8", 0, 0, 200), ("uint8", 10, 12, 70), ("uint8", 200, 5, 255),
             ("int32", 0, None, None)]


def test_small_k_narrow_n_every_tail(isa):
    """1x1-conv-like GEMMs: K = 4..36, N = 1..40 (16 and 24 included), row counts around the tiles."""
    rng = np.random.default_rng(11)
    for Kd in list(range(4, 37, 4)) + [5, 17, 30]:
        for N in range(1, 41):
            M = int(rng.choice([1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 26, 33]))
            a, w, b, m = make_case(rng, M, N, Kd, a_dtype=str(rng.choice(["int8", "uint8"])))
            zp = int(rng.integers(-128, 128)) if a.dtype == np.int8 else int(rng.integers(0, 256))
            out_dtype, ozp, lo, hi = EPILOGUES[int(rng.integers(len(EPILOGUES)))]
            run_and_check(a, w, b, None if out_dtype == "int32" else m, a_zero_point=zp, out_dtype=out_dtype,
                          out_zero_point=ozp, out_min=lo, out_max=hi)


@pytest.mark.parametrize("out_dtype,out_zp,out_min,out_max", EPILOGUES[:-1])
def test_epilogue_saturation_and_large_multipliers(isa, threads, out_dtype, out_zp, out_min, out_max):
    """Accumulators near +-2^31 with multipliers just below 1 (scaled values far beyond int16, which the
    epilogue saturates step by step) and, in some columns only, multipliers >= 1 (scaled values beyond
    int32)."""
    rng = np.random.default_rng(12)
    for M, N, Kd in [(37, 70, 16), (9, 16, 32), (20, 24, 24), (3, 130, 8), (64, 40, 36)]:
        a = rng.integers(-128, 128, (M, Kd)).astype(np.int8)
        w = rng.integers(-127, 128, (Kd, N)).astype(np.int8)
        b = rng.choice([-2_146_000_000, 2_146_000_000, 0, 40_000, -40_000, 100], N).astype(np.int32)
        below_one = np.float32(np.nextafter(np.float32(1), np.float32(0)))
        m = rng.choice(np.array([below_one, 0.75, 0.5, 1e-3, 2e-5], np.float32), N)
        run_and_check(a, w, b, m, out_dtype=out_dtype, out_zero_point=out_zp, out_min=out_min, out_max=out_max)
        m_big = m.copy()
        m_big[rng.integers(N)] = np.float32(1.0)
        m_big[rng.integers(N)] = np.float32(3.0e9)
        run_and_check(a, w, b, m_big, out_dtype=out_dtype, out_zero_point=out_zp, out_min=out_min,
                      out_max=out_max)


def test_clamp_bounds_for_fused_relu(isa, threads):
    rng = np.random.default_rng(7)
    a, w, b, m = make_case(rng, 29, 35, 64)
    lo, hi = K.relu_bounds("relu")
    got = run_and_check(a, w, b, m, out_min=lo, out_max=hi)
    assert got.min() >= 0
    lo, hi = K.relu_bounds("relu6", "int8", 0, out_scale=0.05)
    assert (lo, hi) == (0, 120)
    run_and_check(a, w, b, m, out_min=lo, out_max=hi)
    lo, hi = K.relu_bounds("relu6", "uint8", 10, out_scale=0.1)
    assert (lo, hi) == (10, 70)
    run_and_check(a, w, b, m, out_dtype="uint8", out_zero_point=10, out_min=lo, out_max=hi)


def test_all_paths_and_thread_counts_agree_bytewise():
    rng = np.random.default_rng(8)
    a, w, b, m = make_case(rng, 301, 203, 517)
    results = []
    for name in K.cpu_info()["usable"]:
        with K.use_isa(name):
            packed = K.pack_gemm_weights(w, b, m)
            for n in (1, 2, 3):
                K.set_num_threads(n)
                results.append(K.gemm(a, packed).tobytes())
    K.set_num_threads(2)
    assert len(set(results)) == 1


def test_reference_module_matches_oracle():
    rng = np.random.default_rng(9)
    for a_dtype, zp in [("int8", 0), ("uint8", 77)]:
        a, w, b, m = make_case(rng, 23, 31, 45, a_dtype=a_dtype)
        for out_dtype, ozp in [("int8", 5), ("uint8", 128), ("int32", 0)]:
            got = reference.gemm(a, w, b, None if out_dtype == "int32" else m, input_zero_point=zp,
                                 out_dtype=out_dtype, out_zero_point=ozp)
            want = oracle_gemm(a, w, b, m, a_zero_point=zp, out_dtype=out_dtype, out_zero_point=ozp)
            np.testing.assert_array_equal(got, want)


def test_requantize_multiplier_is_float32_steps():
    m = K.requantize_multiplier(0.1, np.array([0.02, 0.03]), 0.7)
    want = np.float32(0.1) * np.array([0.02, 0.03], np.float32) / np.float32(0.7)
    assert m.dtype == np.float32
    np.testing.assert_array_equal(m, want)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="output_scale"):
            K.requantize_multiplier(0.1, 0.2, bad)


def test_packed_object_reports_its_contents():
    w = np.arange(-6, 6, dtype=np.int8).reshape(3, 4)
    b = np.array([1, 2, 3, 4], np.int32)
    p = K.pack_gemm_weights(w, b, np.array([0.5, 0.25, 0.125, 1.0], np.float32), input_dtype="uint8",
                            input_zero_point=128)
    assert (p.K, p.N, p.input_dtype, p.input_zero_point, p.per_channel) == (3, 4, "uint8", 128, True)
    assert p.isa == K.active_isa()
    np.testing.assert_array_equal(p.bias, b)
    np.testing.assert_array_equal(p.multiplier, [0.5, 0.25, 0.125, 1.0])
    assert K.pack_gemm_weights(w).multiplier is None


# ---------------------------------------------------------------------------------------------------------------------
# Activations whose bytes are all < 128 (int8 in [0, 127] after a ReLU, or uint8 <= 127): the AVX2 path then runs
# vpmaddubsw, exact because a pair sum is at most 2 * 127 * 128 = 32512 < 32767, with z_a folded into the bias; any
# byte >= 128 in a row tile / task must send it back to the int16 path. Every ISA must give the oracle's bits.

SEVEN_BIT_ZPS = [("int8", 0), ("int8", 5), ("int8", -3), ("int8", 127), ("int8", -128),
                 ("uint8", 0), ("uint8", 127), ("uint8", 128), ("uint8", 255)]


def seven_bit(rng, shape, dtype):
    return rng.integers(0, 128, shape).astype(dtype)


@pytest.mark.parametrize("a_dtype,zp", SEVEN_BIT_ZPS)
def test_7bit_inputs_every_tail(isa, a_dtype, zp):
    rng = np.random.default_rng(40)
    for M in range(1, 13):
        for N, Kd in [(1, 1), (16, 4), (17, 3), (15, 5), (33, 7), (32, 8), (40, 33), (9, 65), (48, 130)]:
            a = seven_bit(rng, (M, Kd), a_dtype)
            _, w, b, m = make_case(rng, M, N, Kd)
            run_and_check(a, w, b, m, a_zero_point=zp, out_dtype="int8", out_zero_point=3)
            run_and_check(a, w, b, None, a_zero_point=zp, out_dtype="int32")


def test_7bit_reference_twin_agrees(isa):
    rng = np.random.default_rng(41)
    for a_dtype, zp in SEVEN_BIT_ZPS:
        a = seven_bit(rng, (37, 91), a_dtype)
        _, w, b, m = make_case(rng, 37, 50, 91)
        packed = K.pack_gemm_weights(w, b, m, input_dtype=a.dtype, input_zero_point=zp)
        got = K.gemm(a, packed, out_dtype="uint8", out_zero_point=7)
        want = reference.gemm(a, w, b, m, input_zero_point=zp, out_dtype="uint8", out_zero_point=7)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("Kd", [1, 2, 3, 4, 5, 63, 64, 515, 1027])
def test_7bit_largest_pair_sums(isa, threads, Kd):
    """a = 127 everywhere against all -128 / all 127 / alternating weights: every vpmaddubsw pair sum at its bound."""
    a = np.full((13, Kd), 127, np.int8)
    w = np.empty((Kd, 35), np.int8)
    w[:, 0:9] = -128
    w[:, 9:18] = 127
    w[:, 18:27] = np.where(np.arange(Kd) % 2 == 0, -128, 127)[:, None]
    w[:, 27:] = np.where((np.arange(Kd) // 2) % 2 == 0, -128, 127)[:, None]
    for a_dtype, zp in [("int8", 0), ("int8", 127), ("uint8", 0), ("uint8", 255)]:
        run_and_check(a.astype(a_dtype), w, None, None, a_zero_point=zp, out_dtype="int32", narrow_range=False)


@pytest.mark.parametrize("a_dtype,zp,bad", [("uint8", 0, 128), ("uint8", 128, 255), ("uint8", 100, 200),
                                            ("int8", 0, -1), ("int8", 0, -128), ("int8", -5, -2)])
def test_7bit_one_ineligible_byte_anywhere(isa, a_dtype, zp, bad):
    """One byte >= 128 at each row and at the first, second, last k and k tails of tiles: exact fallback."""
    rng = np.random.default_rng(42)
    M, Kd, N = 12, 37, 33
    base = np.full((M, Kd), 127, a_dtype)
    base[:, ::3] = seven_bit(rng, (M, (Kd + 2) // 3), a_dtype)
    w = rng.choice(np.array([-128, 127], np.int8), (Kd, N))
    for r in range(M):
        for k in [0, 1, 2, 3, 4, 31, 32, 35, Kd - 1]:
            a = base.copy()
            a[r, k] = bad
            run_and_check(a, w, None, None, a_zero_point=zp, out_dtype="int32", narrow_range=False)


def test_7bit_mixed_tasks_and_strided_rows(isa, threads):
    """Many row chunks (threads split them), one of them holding a byte >= 128; rows read at a stride."""
    rng = np.random.default_rng(43)
    for a_dtype, zp, bad in [("int8", 0, -128), ("uint8", 3, 128)]:
        big = seven_bit(rng, (700, 300), a_dtype)
        a = big[:, 7:7 + 211]
        assert not a.flags.c_contiguous
        _, w, b, m = make_case(rng, 700, 70, 211)
        run_and_check(a, w, b, m, a_zero_point=zp, out_dtype="int8")
        big[350, 7 + 210] = bad
        run_and_check(a, w, b, m, a_zero_point=zp, out_dtype="int8")
        run_and_check(a, w, b, None, a_zero_point=zp, out_dtype="int32")
