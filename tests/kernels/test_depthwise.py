"""megq.kernels depthwise conv2d (NHWC, packed weights) against an independent numpy oracle,
bit for bit, on every usable ISA and at 1 and 2 threads."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import megq.kernels as K
import oracles.ops as O
from megq import reference


def rand_q(rng, dtype, shape):
    lo, hi = O.RANGES[dtype]
    return rng.integers(lo, hi + 1, shape).astype(dtype)


def make(rng, C, k, m=1, *, dtype="int8", per_channel=True, full_range=True):
    kh, kw = (k, k) if isinstance(k, int) else k
    Co = C * m
    w = rng.integers(-128 if full_range else -127, 128, (Co, kh, kw)).astype(np.int8)
    b = rng.integers(-3000, 3000, Co).astype(np.int32)
    scale = 1.0 / (np.sqrt(kh * kw) * 128.0)
    mult = (rng.uniform(0.5, 2.0, Co) * scale).astype(np.float32) if per_channel else np.float32(scale)
    return w, b, mult


def check(x, w, b, mult, *, z_x=0, stride=(1, 1), padding=(0, 0), dilation=(1, 1), z_y=0, out_dtype="int8",
          out_min=None, out_max=None, narrow_range=False):
    C = x.shape[3]
    m = w.shape[0] // C
    packed = K.pack_depthwise_weights(w, b, mult, in_channels=C, input_dtype=x.dtype, input_zero_point=z_x,
                                      narrow_range=narrow_range)
    got = K.depthwise_conv2d(x, packed, stride, padding, dilation, out_dtype=out_dtype, out_zero_point=z_y,
                             out_min=out_min, out_max=out_max)
    want = O.depthwise(x, w, b, mult, z_x=z_x, stride=stride, padding=padding, dilation=dilation, multiplier=m,
                       z_y=z_y, out_dtype=out_dtype, lo=out_min, hi=out_max)
    assert got.dtype == np.dtype(out_dtype) and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    ref = reference.depthwise_conv2d(x, w, b, mult, input_zero_point=z_x, stride=stride, padding=padding,
                                     dilation=dilation, out_dtype=out_dtype, out_zero_point=z_y, out_min=out_min,
                                     out_max=out_max)
    np.testing.assert_array_equal(ref, want)
    return got


@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_channel_sweep(isa, threads, k, s):
    rng = np.random.default_rng(50)
    for C in list(range(1, 34)) + [64, 96, 144]:
        dtype = "int8" if C % 3 else "uint8"
        z_x = int(rng.integers(-20, 20)) if dtype == "int8" else int(rng.integers(0, 256))
        x = rand_q(rng, dtype, (2, 9, 11, C) if C < 40 else (1, 7, 9, C))
        w, b, mult = make(rng, C, k)
        check(x, w, b, mult, z_x=z_x, stride=(s, s), padding=(k // 2, k // 2), z_y=int(rng.integers(-5, 5)))


@pytest.mark.parametrize("s", [1, 2])
def test_channel_groups(isa, threads, s):
    # 64-channel groups (the avx512vnni kernel's byte-transposed layout) with and without a partial last
    # group and with 1-3 tiles after the groups; every output clamp style (ReLU-style lo >= z skips the
    # sign of the rounding offset), multipliers >= 1 (the float clamp), uint8 and int8 outputs.
    rng = np.random.default_rng(60 + s)
    for C in [49, 63, 65, 80, 112, 128, 176, 192, 208]:
        for case in range(3):
            dtype = ("int8", "uint8")[(C + case) % 2]
            z_x = int(rng.integers(-20, 20)) if dtype == "int8" else int(rng.integers(0, 256))
            x = rand_q(rng, dtype, (1, 6, 9 + case, C))
            w, b, mult = make(rng, C, 3)
            out_dtype = ("int8", "uint8")[(C // 16 + case) % 2]
            z_y = int(rng.integers(-20, 20)) + (128 if out_dtype == "uint8" else 0)
            lo = hi = None
            if case == 1:  # ReLU6-style bounds: lo = z_y
                lo, hi = z_y, min(z_y + 100, O.RANGES[out_dtype][1])
            if case == 2:  # saturating multipliers, some >= 1
                mult = (mult * np.float32(300.0)).astype(np.float32)
                lo, hi = O.RANGES[out_dtype][0] + 3, O.RANGES[out_dtype][1] - 5
            check(x, w, b, mult, z_x=z_x, stride=(s, s), padding=(1, 1), z_y=z_y, out_dtype=out_dtype,
                  out_min=lo, out_max=hi)
    # the general widening (dilation, stride 3, 5-wide windows) and channel multipliers into groups
    x = rand_q(rng, "int8", (1, 11, 12, 72))
    for k, st, dil in [((3, 3), (3, 3), (1, 1)), ((3, 3), (1, 1), (2, 2)), ((5, 5), (s, s), (1, 1)),
                       ((1, 5), (s, 1), (1, 1)), ((4, 3), (1, s), (1, 2))]:
        w, b, mult = make(rng, 72, k)
        check(x, w, b, mult, z_x=5, stride=st, padding=(1, 2), dilation=dil, z_y=-3)
    for C, m in [(32, 2), (22, 3), (17, 4)]:
        x = rand_q(rng, "uint8", (1, 7, 8, C))
        w, b, mult = make(rng, C, 3, m)
        check(x, w, b, mult, z_x=100, stride=(s, s), padding=(1, 1), out_dtype="uint8", z_y=128)


def test_geometry_sweep(isa):
    rng = np.random.default_rng(51)
    x = rand_q(rng, "int8", (1, 9, 10, 21))
    for (kh, kw), (sh, sw), (ph, pw), (dh, dw) in itertools.product(
            [(1, 1), (2, 2), (3, 3), (4, 3), (5, 5), (7, 7), (1, 5)], [(1, 1), (2, 2), (3, 1)],
            [(0, 0), (1, 1), (3, 2)], [(1, 1), (2, 2), (1, 3)]):
        if (kh - 1) * dh + 1 > 9 + 2 * ph or (kw - 1) * dw + 1 > 10 + 2 * pw:
            continue
        w, b, mult = make(rng, 21, (kh, kw))
        check(x, w, b, mult, z_x=-3, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), z_y=2)


def test_padding_larger_than_kernel(isa):
    # Windows entirely in the padding read only z_x: the output is requantize(bias).
    rng = np.random.default_rng(52)
    x = rand_q(rng, "uint8", (1, 3, 4, 18))
    w, b, mult = make(rng, 18, 3)
    y = check(x, w, b, mult, z_x=77, padding=(4, 5), z_y=128, out_dtype="uint8")
    np.testing.assert_array_equal(y[0, 0, 0], O.finish(O.fmul(b.astype(np.float32), mult), 128, "uint8"))


@pytest.mark.parametrize("m", [2, 3, 4])
def test_channel_multiplier(isa, threads, m):
    rng = np.random.default_rng(53)
    for C, k, s in [(1, 3, 1), (3, 3, 2), (8, 5, 1), (13, 3, 1), (16, 3, 2)]:
        x = rand_q(rng, "int8", (2, 8, 7, C))
        w, b, mult = make(rng, C, k, m)
        check(x, w, b, mult, stride=(s, s), padding=(1, 1))
    # 5-D MegEngine form and 4-D OIHW form
    x = rand_q(rng, "int8", (1, 6, 6, 4))
    w, b, mult = make(rng, 4, 3, m)
    pk5 = K.pack_depthwise_weights(w.reshape(4, m, 1, 3, 3), b, mult, narrow_range=False)
    pk4 = K.pack_depthwise_weights(w[:, None], b, mult, in_channels=4, narrow_range=False)
    assert pk5.channel_multiplier == m and pk5.out_channels == 4 * m and pk5.kernel_size == (3, 3)
    want = O.depthwise(x, w, b, mult, z_x=0, stride=(1, 1), padding=(1, 1), dilation=(1, 1), multiplier=m, z_y=0,
                       out_dtype="int8")
    np.testing.assert_array_equal(K.depthwise_conv2d(x, pk5, 1, 1), want)
    np.testing.assert_array_equal(K.depthwise_conv2d(x, pk4, 1, 1), want)


def test_extremes_exactness(isa):
    # Largest |acc|: every x at the far end, every weight -128 (exact only without int16
    # pair saturation), per-channel multipliers that are powers of two (exact ties).
    for dtype, z_x, xv in [("int8", 0, -128), ("int8", 127, -128), ("uint8", 0, 255), ("uint8", 255, 0)]:
        for C in (16, 19, 33):
            x = np.full((1, 7, 7, C), xv, dtype)
            w = np.full((C, 5, 5), -128, np.int8)
            w[1::2] = 127
            b = np.arange(C, dtype=np.int32) - C // 2
            mult = np.float32(2.0) ** -np.arange(10, 10 + C, dtype=np.float32)
            check(x, w, b, mult.astype(np.float32), z_x=z_x, padding=(2, 2))
            check(x, w, b, np.float32(2.0 ** -14), z_x=z_x, padding=(2, 2), out_dtype="uint8", z_y=128)
    # ties: M = 0.5 on odd accumulators
    rng = np.random.default_rng(54)
    x = rand_q(rng, "int8", (2, 8, 8, 24))
    w = rng.integers(-2, 3, (24, 3, 3)).astype(np.int8)
    check(x, w, np.zeros(24, np.int32), np.float32(0.5), padding=(1, 1))
    check(x, w, None, np.float32(0.25), padding=(1, 1), stride=(2, 2))


def test_multiplier_just_below_half(isa):
    # acc = +-1 and +-3 with M = 0.49999997f: 0.49999997 -> 0, 1.4999999 -> 1 (not 1, 2).
    h = np.float32(np.nextafter(np.float32(0.5), np.float32(0)))
    x = np.zeros((1, 3, 3, 20), np.int8)
    x[0, 1, 1, :] = [1, -1, 3, -3] * 5
    w = np.zeros((20, 3, 3), np.int8)
    w[:, 1, 1] = 1
    packed = K.pack_depthwise_weights(w, None, h)
    y = K.depthwise_conv2d(x, packed, 1, 1)
    np.testing.assert_array_equal(y[0, 1, 1], [0, 0, 1, -1] * 5)


def test_relu_bounds(isa):
    rng = np.random.default_rng(55)
    x = rand_q(rng, "uint8", (1, 10, 10, 48))
    w, b, mult = make(rng, 48, 3)
    lo, hi = K.relu_bounds("relu6", "uint8", 10, out_scale=0.05)
    y = check(x, w, b, mult, z_x=128, padding=(1, 1), z_y=10, out_dtype="uint8", out_min=lo, out_max=hi)
    assert y.min() >= lo and y.max() <= hi
    check(x, w, b, mult, z_x=128, padding=(1, 1), z_y=0, out_dtype="int8", out_min=0)


def test_large_threaded_and_batch(isa, threads):
    rng = np.random.default_rng(56)
    for shape, k, s in [((3, 28, 28, 32), 3, 1), ((2, 29, 31, 96), 3, 2), ((1, 15, 14, 144), 5, 2)]:
        x = rand_q(rng, "int8", shape)
        w, b, mult = make(rng, shape[3], k, full_range=False)
        check(x, w, b, mult, stride=(s, s), padding=(k // 2, k // 2), narrow_range=True)


def test_views(isa, threads):
    rng = np.random.default_rng(57)
    big = rand_q(rng, "int8", (3, 14, 15, 50))
    w, b, mult = make(rng, 17, 3)
    for v in [big[1:, 1:12, 2:, 3:20], big[:, ::2, ::-1, 10:27], big[::-1, :, ::2, :17], big[:, :, :, ::3]]:
        check(v, w, b, mult, padding=(1, 1), z_x=1)


def test_packed_object():
    rng = np.random.default_rng(58)
    w, b, mult = make(rng, 5, 3)
    pk = K.pack_depthwise_weights(w, b, mult, narrow_range=False, input_dtype="uint8", input_zero_point=9)
    assert pk.in_channels == 5 and pk.out_channels == 5 and pk.input_dtype == "uint8"
    assert pk.input_zero_point == 9 and pk.per_channel
    np.testing.assert_array_equal(pk.weight, w)
    np.testing.assert_array_equal(pk.bias, b)
    np.testing.assert_array_equal(pk.multiplier, mult)
    pk1 = K.pack_depthwise_weights(w, None, 0.01, narrow_range=False)
    assert not pk1.per_channel and np.all(pk1.bias == 0)


def test_bad_arguments():
    rng = np.random.default_rng(59)
    w, b, mult = make(rng, 4, 3, full_range=False)
    pk = K.pack_depthwise_weights(w, b, mult)
    x = np.zeros((1, 5, 5, 4), np.int8)
    cases = [
        (TypeError, "^weight:", lambda: K.pack_depthwise_weights(w.astype(np.int16), b, mult)),
        (ValueError, "^weight:", lambda: K.pack_depthwise_weights(w[0], b, mult)),
        (ValueError, "^weight:", lambda: K.pack_depthwise_weights(np.zeros((4, 2, 3, 3), np.int8), b, mult)),
        (ValueError, "^weight:", lambda: K.pack_depthwise_weights(np.full((4, 3, 3), -128, np.int8), b, mult)),
        (ValueError, "^weight:", lambda: K.pack_depthwise_weights(
            np.full((4, 3, 3), 127, np.int8), np.full(4, 2**31 - 1000, np.int32), mult)),
        (ValueError, "^in_channels:", lambda: K.pack_depthwise_weights(w, b, mult, in_channels=3)),
        (TypeError, "^bias:", lambda: K.pack_depthwise_weights(w, b.astype(np.int64), mult)),
        (ValueError, "^bias:", lambda: K.pack_depthwise_weights(w, b[:3], mult)),
        (ValueError, "^multiplier:", lambda: K.pack_depthwise_weights(w, b, None)),
        (ValueError, "^multiplier:", lambda: K.pack_depthwise_weights(w, b, mult[:3])),
        (ValueError, "^multiplier:", lambda: K.pack_depthwise_weights(w, b, np.float32([0, 1, 1, 1]))),
        (ValueError, "^multiplier:", lambda: K.pack_depthwise_weights(w, b, np.float32([np.nan, 1, 1, 1]))),
        (ValueError, "^input_zero_point:", lambda: K.pack_depthwise_weights(w, b, mult, input_zero_point=128)),
        (ValueError, "^input_zero_point:", lambda: K.pack_depthwise_weights(w, b, mult, input_dtype="uint8",
                                                                           input_zero_point=-1)),
        (TypeError, "^x:", lambda: K.depthwise_conv2d(x.view(np.uint8), pk)),
        (TypeError, "^x:", lambda: K.depthwise_conv2d(x.astype(np.float32), pk)),
        (ValueError, "^x:", lambda: K.depthwise_conv2d(x[0], pk)),
        (ValueError, "^x:", lambda: K.depthwise_conv2d(np.zeros((1, 5, 5, 5), np.int8), pk)),
        (TypeError, "^packed:", lambda: K.depthwise_conv2d(x, w)),
        (ValueError, "^weight:", lambda: K.depthwise_conv2d(np.zeros((1, 2, 2, 4), np.int8), pk)),
        (ValueError, "^stride:", lambda: K.depthwise_conv2d(x, pk, 0)),
        (ValueError, "^padding:", lambda: K.depthwise_conv2d(x, pk, 1, -1)),
        (ValueError, "^dilation:", lambda: K.depthwise_conv2d(x, pk, 1, 1, 0)),
        (ValueError, "^padding:", lambda: K.depthwise_conv2d(x, pk, 1, 2**29)),
        (ValueError, "^padding:", lambda: K.depthwise_conv2d(x, pk, 1, 2**40)),
        (ValueError, "^dilation:", lambda: K.depthwise_conv2d(x, pk, 1, 0, 2**31)),
        (ValueError, "^out_zero_point:", lambda: K.depthwise_conv2d(x, pk, out_zero_point=128)),
        (ValueError, "^out_min", lambda: K.depthwise_conv2d(x, pk, out_min=10, out_max=5)),
        (ValueError, "^out_min", lambda: K.depthwise_conv2d(x, pk, out_dtype="uint8", out_min=-1)),
        (ValueError, "^out_dtype:", lambda: K.depthwise_conv2d(x, pk, out_dtype="int32")),
    ]
    for exc, match, fn in cases:
        with pytest.raises(exc, match=match):
            fn()
