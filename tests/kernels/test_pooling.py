"""megq.kernels max_pool2d / avg_pool2d / global_avg_pool2d (NHWC) against independent
numpy oracles, bit for bit, on every usable ISA and at 1 and 2 threads."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import megq.kernels as K
import oracles.ops as O
from megq import reference

MODES = ["max", "avg_exclude", "avg_include"]
REF_MODES = {"max": "max", "avg_exclude": "average_count_exclude_padding", "avg_include": "average"}


def run(x, mode, k, s, p, d=(1, 1), z=0):
    if mode == "max":
        return K.max_pool2d(x, k, s, p, d)
    return K.avg_pool2d(x, k, s, p, mode=REF_MODES[mode], zero_point=z, dilation=d)


def check(x, mode, k, s, p, d=(1, 1), z=0):
    got = run(x, mode, k, s, p, d, z)
    want = O.pool2d(x, mode, k, s, p, d, z)
    assert got.dtype == x.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(reference.pool2d(x, k, s, p, d, REF_MODES[mode], z), want)


def rand_q(rng, dtype, shape):
    lo, hi = O.RANGES[dtype]
    return rng.integers(lo, hi + 1, shape).astype(dtype)


@pytest.mark.parametrize("mode", MODES)
def test_channel_sweep(isa, threads, mode):
    rng = np.random.default_rng(30)
    for C in list(range(1, 34)) + [64, 96, 144]:
        dtype = "int8" if C % 2 else "uint8"
        x = rand_q(rng, dtype, (2, 7, 9, C))
        check(x, mode, (3, 3), (2, 2), (1, 1), z=5)


@pytest.mark.parametrize("mode", MODES)
def test_geometry_sweep(isa, mode):
    rng = np.random.default_rng(31)
    x = rand_q(rng, "int8", (2, 11, 10, 19))
    xu = rand_q(rng, "uint8", (1, 9, 13, 40))
    for (kh, kw), (sh, sw), (ph, pw), (dh, dw) in itertools.product(
            [(1, 1), (2, 2), (3, 3), (2, 3), (5, 4)], [(1, 1), (2, 2), (3, 1)], [(0, 0), (1, 1), (2, 1)],
            [(1, 1), (2, 2)]):
        for t in (x, xu):
            eff_h, eff_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
            if eff_h > t.shape[1] + 2 * ph or eff_w > t.shape[2] + 2 * pw or ph >= eff_h or pw >= eff_w:
                continue
            check(t, mode, (kh, kw), (sh, sw), (ph, pw), (dh, dw), z=7)


@pytest.mark.parametrize("mode", MODES)
def test_large_windows_and_threads(isa, threads, mode):
    rng = np.random.default_rng(32)
    x = rand_q(rng, "int8", (3, 31, 29, 48))
    check(x, mode, (3, 3), (1, 1), (1, 1))
    check(x, mode, (13, 11), (5, 6), (2, 3))   # 143 taps: int32 sums in the AVX2 path
    xu = rand_q(rng, "uint8", (1, 17, 19, 33))
    check(xu, mode, (17, 9), (1, 2), (0, 4), z=255)


def test_extremes_and_ties(isa):
    for dtype in ["int8", "uint8"]:
        lo, hi = O.RANGES[dtype]
        for v in (lo, hi):
            x = np.full((1, 5, 5, 37), v, dtype)
            for mode in MODES:
                check(x, mode, (3, 3), (1, 1), (1, 1), z=v)
    # means with exact .5: [1, 2] -> 2, [-1, -2] -> -2, [0, -1] -> -1, [0, 1] -> 1
    x = np.array([1, 2, -1, -2, 0, -1, 0, 1], np.int8).reshape(1, 4, 2, 1)
    y = K.avg_pool2d(x, (1, 2), (1, 2))
    np.testing.assert_array_equal(y.ravel(), [2, -2, -1, 1])
    check(x, "avg_exclude", (1, 2), (1, 2), (0, 0))
    rng = np.random.default_rng(33)
    x = rng.integers(-3, 3, (2, 12, 12, 40)).astype(np.int8)  # small values: many ties
    for mode in MODES:
        check(x, mode, (2, 2), (1, 1), (1, 1))
        check(x, mode, (4, 4), (2, 2), (1, 2))


def test_global_avg_pool(isa, threads):
    rng = np.random.default_rng(34)
    for dtype in ["int8", "uint8"]:
        for shape in [(1, 1, 1, 1), (2, 7, 7, 1280), (3, 5, 3, 33), (1, 13, 11, 7), (2, 1, 2, 257),
                      (1, 128, 128, 9)]:
            x = rand_q(rng, dtype, shape)
            got = K.global_avg_pool2d(x)
            want = O.global_avg_pool(x)
            assert got.shape == want.shape and got.dtype == x.dtype
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(reference.global_avg_pool2d(x), want)
        lo, hi = O.RANGES[dtype]
        for v in (lo, hi):
            np.testing.assert_array_equal(K.global_avg_pool2d(np.full((1, 3, 3, 20), v, dtype)), v)
    x = np.array([1, 2, -1, -2, -3, 0, 3, 0], np.int8).reshape(1, 2, 1, 4)
    np.testing.assert_array_equal(K.global_avg_pool2d(x).ravel(), [-1, 1, 1, -1])


@pytest.mark.parametrize("mode", MODES)
def test_every_channel_tail(isa, mode):
    # C = 1..130: every tail of the 8 / 16 / 32 (AVX2) and 16 / 32 / 64 (AVX-512) channel blocks, both dtypes,
    # padded 3x3 windows (edge pixels have fewer taps) and extremes planted in the last channels.
    rng = np.random.default_rng(36)
    for C in range(1, 131):
        dtype = "int8" if C % 2 else "uint8"
        lo, hi = O.RANGES[dtype]
        x = rand_q(rng, dtype, (1, 5, 4, C))
        x[0, 1:3, :, -1] = hi
        x[0, 3:, :, -1] = lo
        check(x, mode, (3, 3), (2, 1), (1, 1), z=int(rng.integers(lo, hi + 1)))


@pytest.mark.parametrize("mode", ["avg_exclude", "avg_include"])
def test_int32_sums_channel_tails(isa, mode):
    # Windows of more than 128 taps take the int32-sum path; more than 1024 taps the division path.
    rng = np.random.default_rng(37)
    for C in [1, 5, 15, 16, 17, 31, 33, 47, 64, 65, 79]:
        for dtype in ["int8", "uint8"]:
            lo, hi = O.RANGES[dtype]
            x = rand_q(rng, dtype, (1, 14, 13, C))
            check(x, mode, (12, 11), (2, 2), (1, 2), z=hi)
            check(x, mode, (12, 11), (1, 1), (0, 0), z=lo)
    x = rand_q(rng, "int8", (1, 36, 33, 19))
    check(x, mode, (35, 32), (1, 1), (1, 1), z=-128)   # 1120 taps: the vdivps branch
    xu = np.full((1, 34, 34, 21), 255, np.uint8)
    check(xu, mode, (33, 33), (1, 1), (0, 0), z=255)


def test_global_avg_pool_channel_tails(isa, threads):
    # Channel blocks of 256 (the driver), 64 / 16 (the AVX-512 kernel), 8 (the AVX2 kernel) and their tails,
    # including 1280 (MobileNetV2's last feature map).
    rng = np.random.default_rng(38)
    for C in list(range(1, 70)) + [127, 128, 129, 255, 256, 257, 319, 511, 1280, 1283]:
        dtype = "int8" if C % 3 else "uint8"
        x = rand_q(rng, dtype, (2, 3, 2, C))
        want = O.global_avg_pool(x)
        np.testing.assert_array_equal(K.global_avg_pool2d(x), want)
        np.testing.assert_array_equal(reference.global_avg_pool2d(x), want)
    for dtype in ["int8", "uint8"]:
        lo, hi = O.RANGES[dtype]
        for v in (lo, hi):   # 1600 positions of an extreme: the vdivps branch, exact at the range ends
            np.testing.assert_array_equal(K.global_avg_pool2d(np.full((1, 40, 40, 67), v, dtype)), v)
        x = rand_q(rng, dtype, (1, 41, 39, 70))
        np.testing.assert_array_equal(K.global_avg_pool2d(x), O.global_avg_pool(x))


def test_views(isa, threads):
    rng = np.random.default_rng(35)
    big = rand_q(rng, "int8", (3, 15, 16, 50))
    for v in [big[1:, 2:13, 1:, 3:40], big[:, ::2, ::-1, ::2], big[::-1, :, ::3, :],
              big.transpose(0, 2, 1, 3)]:
        for mode in MODES:
            check(v, mode, (3, 2), (2, 1), (1, 0))
        np.testing.assert_array_equal(K.global_avg_pool2d(v), O.global_avg_pool(v))


def test_bad_arguments():
    x = np.zeros((1, 5, 5, 3), np.int8)
    cases = [
        (TypeError, "^x:", lambda: K.max_pool2d(x.astype(np.int32), 2)),
        (TypeError, "^x:", lambda: K.max_pool2d(x.tolist(), 2)),
        (ValueError, "^x:", lambda: K.max_pool2d(x[0], 2)),
        (ValueError, "^x:", lambda: K.global_avg_pool2d(x[0])),
        (ValueError, "^x:", lambda: K.max_pool2d(np.zeros((1, 5, 5, 0), np.int8), 2)),
        (ValueError, "^kernel_size:", lambda: K.max_pool2d(x, 0)),
        (ValueError, "^kernel_size:", lambda: K.max_pool2d(x, 6)),
        (ValueError, "^kernel_size:", lambda: K.avg_pool2d(x, (3, 3), 1, 0, dilation=3)),
        (ValueError, "^kernel_size:", lambda: K.max_pool2d(x, (1, 2, 3))),
        (TypeError, "^kernel_size:", lambda: K.max_pool2d(x, 2.0)),
        (ValueError, "^stride:", lambda: K.max_pool2d(x, 2, 0)),
        (ValueError, "^stride:", lambda: K.max_pool2d(x, 2, -1)),
        (ValueError, "^padding:", lambda: K.max_pool2d(x, 2, 1, -1)),
        (ValueError, "^padding:", lambda: K.max_pool2d(x, 2, 1, 2)),
        (ValueError, "^dilation:", lambda: K.max_pool2d(x, 2, 1, 0, 0)),
        (ValueError, "^padding:", lambda: K.max_pool2d(x, 2, 1, 2**40)),
        (ValueError, "^kernel_size:", lambda: K.max_pool2d(x, 10**9)),
        (ValueError, "^stride:", lambda: K.max_pool2d(x, 2, (1, 2**31))),
        (ValueError, "^mode:", lambda: K.avg_pool2d(x, 2, mode="sum")),
        (ValueError, "^zero_point:", lambda: K.avg_pool2d(x, 2, zero_point=200)),
        (ValueError, "^zero_point:", lambda: K.avg_pool2d(x.view(np.uint8), 2, zero_point=-1)),
    ]
    for exc, match, fn in cases:
        with pytest.raises(exc, match=match):
            fn()
