"""megq.kernels.quantize / dequantize / requantize against independent numpy oracles,
bit for bit, on every usable ISA and at 1 and 2 threads."""
from __future__ import annotations

import numpy as np
import pytest

import megq.kernels as K
import oracles.ops as O
from megq import reference

CHANNELS = list(range(1, 34)) + [64, 96, 144]


def rand_x(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * 60 * scale).astype(np.float32)


def check_quantize(x, s, z, dtype):
    got = K.quantize(x, s, z, dtype)
    want = O.quantize(x, s, z, dtype)
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(reference.quantize(x, s, z, dtype), want)
    return got


def check_dequantize(q, s, z):
    got = K.dequantize(q, s, z)
    want = O.dequantize(q, s, z)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
    np.testing.assert_array_equal(reference.dequantize(q, s, z).view(np.int32), want.view(np.int32))


@pytest.mark.parametrize("dtype,z", [("int8", 0), ("int8", -7), ("uint8", 128), ("uint8", 3)])
def test_quantize_dequantize_channel_sweep(isa, threads, dtype, z):
    rng = np.random.default_rng(10)
    for C in CHANNELS:
        N, H, W = (2, 3, 5) if C < 40 else (1, 5, 7)
        x = rand_x(rng, (N, C, H, W))
        s = float(rng.uniform(0.05, 2.0))
        q = check_quantize(x, s, z, dtype)
        check_dequantize(q, s, z)


def test_quantize_large_threaded(isa, threads):
    rng = np.random.default_rng(11)
    for shape in [(2, 3, 67, 61), (1, 32, 56, 56), (3, 17, 33, 9), (1, 1, 301, 257)]:
        x = rand_x(rng, shape)
        q = check_quantize(x, 0.37, 5, "int8")
        check_dequantize(q, 0.37, 5)


def test_quantize_ties_and_extremes(isa):
    s = 0.25  # power of two: x / s is exact, so x = (k + 0.5) * s is an exact tie
    k = np.arange(-140, 140, dtype=np.float32)
    ties = np.concatenate([(k + 0.5) * s, k * s, np.float32([0.49999997, -0.49999997, 0.5, -0.5, 1.5, -1.5,
                                                             2.5, -2.5, np.inf, -np.inf, 1e30, -1e30,
                                                             3.4e38, -3.4e38, 1e-45, -1e-45, 0.0, -0.0])])
    x = np.resize(ties, (2, 3, 7, ties.size // 21 + 1)).astype(np.float32)
    for dtype, z in [("int8", 0), ("int8", 127), ("int8", -128), ("uint8", 0), ("uint8", 255), ("uint8", 100)]:
        check_quantize(x, s, z, dtype)
        check_quantize(x, 1.0, z, dtype)
    q = K.quantize(np.float32([[0.49999997, -0.49999997, 0.5, -0.5, 2.5, -2.5]]), 1.0)
    np.testing.assert_array_equal(q, [[0, 0, 1, -1, 3, -3]])
    q = K.quantize(np.float32([[np.inf, -np.inf]]), 0.1, 3, "uint8")
    np.testing.assert_array_equal(q, [[255, 0]])


def test_true_division_not_reciprocal(isa):
    # Values next to ties, where round(x * (1/s)) != round(x / s); the contract is x / s.
    rng = np.random.default_rng(12)
    s = np.float32(0.1)
    x = ((rng.integers(-130, 130, 5000).astype(np.float32) + np.float32(0.5)) * s).astype(np.float32)
    x = np.concatenate([x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))])
    assert np.any(O.rha(x / s) != O.rha(x * (np.float32(1) / s)))
    check_quantize(x.reshape(3, 5, 1000, 1), float(s), 0, "int8")
    check_quantize(x.reshape(3, 1, 1, 5000), float(s), 0, "int8")


def test_views_and_layouts(isa, threads):
    rng = np.random.default_rng(13)
    big = rand_x(rng, (3, 40, 21, 33))
    views = [big[1:, 3:20, 2:19, 5:30], big[:, ::3, ::2, 1:], big[:, :, :, ::2], big[::-1, ::-1, :, ::-1],
             np.asfortranarray(big[:2, :9]), big.transpose(0, 1, 3, 2)]
    for v in views:
        check_quantize(v, 0.5, 1, "int8")
    qbig = rng.integers(-128, 128, (3, 21, 33, 40)).astype(np.int8)
    for v in [qbig[1:, 2:19, 5:30, 3:20], qbig[:, ::2, ::3, :], qbig[:, :, :, ::2], qbig[::-1, :, ::-1, 1:]]:
        check_dequantize(v, 0.3, -4)
    x2 = rand_x(rng, (7, 19))
    check_quantize(x2, 0.7, 2, "uint8")
    check_dequantize(rng.integers(0, 256, (7, 19)).astype(np.uint8), 0.7, 2)


def test_empty_batch(isa):
    assert K.quantize(np.zeros((0, 3, 4, 5), np.float32), 1.0).shape == (0, 4, 5, 3)
    assert K.dequantize(np.zeros((0, 4, 5, 3), np.int8), 1.0).shape == (0, 3, 4, 5)


def test_quantize_three_channels_every_width(isa):
    """RGB inputs (C = 3 has its own interleaving kernels): every pixel count 1..40 around the 8-pixel
    steps and the final partial store, per-image and per-row blocks (strided rows), both dtypes."""
    rng = np.random.default_rng(15)
    for W in range(1, 41):
        x = rand_x(rng, (2, 3, 2, W))
        for dtype, z in [("int8", 0), ("int8", -9), ("uint8", 128), ("uint8", 0)]:
            check_quantize(x, 0.47, z, dtype)
            check_quantize(rand_x(rng, (1, 3, 3, W + 5))[:, :, :, 2:2 + W], 0.9, z, dtype)
    check_quantize(rand_x(rng, (2, 3, 224, 224)), 0.5, 0, "int8")


def test_nan_raises_three_channels(isa):
    """A NaN in any channel, in the vector part or the tail, is reported (C = 3 kernels)."""
    for P in (8, 13, 40):
        for c in range(3):
            for p in (0, 5, P - 1):
                x = np.ones((1, 3, 1, P), np.float32)
                x[0, c, 0, p] = np.nan
                with pytest.raises(ValueError, match="^x: .*NaN"):
                    K.quantize(x, 0.5)


def test_nan_raises(isa, threads):
    for shape, where in [((1, 3, 4, 5), (0, 2, 3, 4)), ((2, 8, 16, 16), (1, 7, 15, 15)), ((1, 1, 1, 3), (0, 0, 0, 1))]:
        x = np.zeros(shape, np.float32)
        x[where] = np.nan
        with pytest.raises(ValueError, match="^x: .*NaN"):
            K.quantize(x, 1.0)


@pytest.mark.parametrize("in_dtype,out_dtype", [("int8", "int8"), ("int8", "uint8"), ("uint8", "int8"),
                                                 ("uint8", "uint8")])
def test_requantize(isa, threads, in_dtype, out_dtype):
    rng = np.random.default_rng(14)
    lo, hi = O.RANGES[in_dtype]
    olo, ohi = O.RANGES[out_dtype]
    for size in list(range(1, 70)) + [1000, 100003]:
        q = rng.integers(lo, hi + 1, size).astype(in_dtype)
        si, so = float(rng.uniform(0.01, 1)), float(rng.uniform(0.01, 1))
        zi, zo = int(rng.integers(lo, hi + 1)), int(rng.integers(olo, ohi + 1))
        got = K.requantize(q, si, zi, so, zo, out_dtype)
        want = O.requantize(q, si, zi, so, zo, out_dtype)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(reference.requantize_tensor(q, si, zi, so, zo, out_dtype), want)
    # exact ties: M = 0.5 and 1.5 on every input value
    q = np.arange(lo, hi + 1).astype(in_dtype)
    for si, so in [(1.0, 2.0), (3.0, 2.0), (1.0, 1.0), (0.1, 0.1), (1e-3, 10.0), (10.0, 1e-3)]:
        for zi, zo in [(lo, olo), (hi, ohi), (0 if lo < 0 else 128, 0 if olo < 0 else 128)]:
            np.testing.assert_array_equal(K.requantize(q, si, zi, so, zo, out_dtype),
                                          O.requantize(q, si, zi, so, zo, out_dtype))
    # identity and any shape / view
    x = rng.integers(lo, hi + 1, (3, 5, 7, 9)).astype(in_dtype)[:, ::2, 1:, :]
    if in_dtype == out_dtype:
        np.testing.assert_array_equal(K.requantize(x, 0.2, int(lo + 1), 0.2, int(lo + 1)), x)
    np.testing.assert_array_equal(K.requantize(x, 0.2, 0 if lo < 0 else 9, 0.3, 1, out_dtype),
                                  O.requantize(x, 0.2, 0 if lo < 0 else 9, 0.3, 1, out_dtype))


def test_requantize_just_below_half(isa):
    h = float(np.nextafter(np.float32(0.5), np.float32(0)))
    q = np.array([1, -1, 3, -3] * 9, np.int8)
    np.testing.assert_array_equal(K.requantize(q, h, 0, 1.0, 0), np.array([0, 0, 1, -1] * 9))
    np.testing.assert_array_equal(K.requantize(q, 0.5, 0, 1.0, 0), np.array([1, -1, 2, -2] * 9))


def test_bad_arguments():
    x = np.zeros((1, 2, 3, 4), np.float32)
    q = np.zeros((1, 3, 4, 2), np.int8)
    cases = [
        (TypeError, "^x:", lambda: K.quantize(x.astype(np.float64), 1.0)),
        (TypeError, "^x:", lambda: K.quantize([[1.0]], 1.0)),
        (ValueError, "^x:", lambda: K.quantize(x[0], 1.0)),
        (ValueError, "^x:", lambda: K.quantize(np.zeros((1, 0, 2, 2), np.float32), 1.0)),
        (ValueError, "^scale:", lambda: K.quantize(x, 0.0)),
        (ValueError, "^scale:", lambda: K.quantize(x, -1.0)),
        (ValueError, "^scale:", lambda: K.quantize(x, float("nan"))),
        (ValueError, "^scale:", lambda: K.quantize(x, float("inf"))),
        (ValueError, "^scale:", lambda: K.quantize(x, 1e-50)),
        (ValueError, "^scale:", lambda: K.quantize(x, np.ones(2))),
        (TypeError, "^scale:", lambda: K.quantize(x, "1")),
        (ValueError, "^zero_point:", lambda: K.quantize(x, 1.0, 128)),
        (ValueError, "^zero_point:", lambda: K.quantize(x, 1.0, -1, "uint8")),
        (TypeError, "^zero_point:", lambda: K.quantize(x, 1.0, 1.5)),
        (ValueError, "^dtype:", lambda: K.quantize(x, 1.0, 0, "int16")),
        (TypeError, "^q:", lambda: K.dequantize(q.astype(np.int16), 1.0)),
        (ValueError, "^q:", lambda: K.dequantize(q[0], 1.0)),
        (ValueError, "^scale:", lambda: K.dequantize(q, 0.0)),
        (ValueError, "^zero_point:", lambda: K.dequantize(q.view(np.uint8), 1.0, 256)),
        (TypeError, "^q:", lambda: K.requantize(q.astype(np.int32), 1.0, 0, 1.0, 0)),
        (ValueError, "^in_scale:", lambda: K.requantize(q, -1.0, 0, 1.0, 0)),
        (ValueError, "^out_scale:", lambda: K.requantize(q, 1.0, 0, float("nan"), 0)),
        (ValueError, "^in_zero_point:", lambda: K.requantize(q, 1.0, 200, 1.0, 0)),
        (ValueError, "^out_zero_point:", lambda: K.requantize(q, 1.0, 0, 1.0, -1, "uint8")),
        ((TypeError, ValueError), "^out_dtype:", lambda: K.requantize(q, 1.0, 0, 1.0, 0, "int4")),
        (ValueError, "^out_dtype:", lambda: K.requantize(q, 1.0, 0, 1.0, 0, "int32")),
    ]
    for exc, match, fn in cases:
        with pytest.raises(exc, match=match):
            fn()
