"""megq.kernels.add / fuse_add_relu / mul against independent numpy oracles, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

import megq.kernels as K
import oracles.ops as O
from megq import reference

OPS = ["add", "fuse_add_relu", "mul"]


def oracle(op, a, b, sa, za, sb, zb, so, zo, od):
    if op == "mul":
        return O.mul(a, b, sa, za, sb, zb, so, zo, od)
    return O.add(a, b, sa, za, sb, zb, so, zo, od, relu=op == "fuse_add_relu")


def check(op, a, b, sa, za, sb, zb, so, zo, od):
    kw = dict(a_scale=sa, a_zero_point=za, b_scale=sb, b_zero_point=zb, out_scale=so, out_zero_point=zo,
              out_dtype=od)
    got = getattr(K, op)(a, b, **kw)
    want = oracle(op, a, b, sa, za, sb, zb, so, zo, od)
    assert got.dtype == np.dtype(od) and got.shape == np.broadcast_shapes(a.shape, b.shape)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(getattr(reference, op)(a, b, sa, za, sb, zb, so, zo, od), want)


def rand_q(rng, dtype, shape):
    lo, hi = O.RANGES[dtype]
    return rng.integers(lo, hi + 1, shape).astype(dtype)


def rand_z(rng, dtype):
    lo, hi = O.RANGES[dtype]
    return int(rng.integers(lo, hi + 1))


@pytest.mark.parametrize("op", OPS)
def test_shapes_dtypes_qparams(isa, threads, op):
    rng = np.random.default_rng(20)
    shapes = [(1, 1, 1, c) for c in range(1, 34)] + [(2, 3, 5, 7), (3, 7, 9, 64), (1, 5, 5, 144),
                                                    (2, 33, 31, 96), (100003,)]
    for shape in shapes:
        da, db, do = rng.choice(["int8", "uint8"], 3)
        a, b = rand_q(rng, da, shape), rand_q(rng, db, shape)
        sa, sb, so = (float(v) for v in rng.uniform(0.01, 0.5, 3))
        if op == "mul":
            so *= 20
        check(op, a, b, sa, rand_z(rng, da), sb, rand_z(rng, db), so, rand_z(rng, do), str(do))


@pytest.mark.parametrize("op", OPS)
def test_every_value_pair_and_ties(isa, op):
    # All 256 x 256 input pairs, with scales giving many exact ties (powers of two, equal scales).
    for da in ["int8", "uint8"]:
        lo, hi = O.RANGES[da]
        a, b = np.meshgrid(np.arange(lo, hi + 1), np.arange(lo, hi + 1))
        a, b = a.astype(da).reshape(1, 256, 256, 1), b.astype(da).reshape(1, 256, 256, 1)
        zs = (0, 0, 0) if da == "int8" else (128, 128, 128)
        for sa, sb, so in [(0.5, 0.25, 1.0), (1.0, 1.0, 2.0), (0.1, 0.1, 0.1), (0.3, 0.7, 0.9), (1.0, 1.0, 256.0),
                           (1e-3, 5.0, 3.0)]:
            check(op, a, b, sa, zs[0], sb, zs[1], so, zs[2], da)
            check(op, a, b, sa, lo, sb, hi, so, hi, da)


def test_relu_and_saturation(isa):
    a = np.array([-128, 127, -1, 1, 0, 100], np.int8)
    b = np.array([-128, 127, 0, 0, -1, 100], np.int8)
    y = K.fuse_add_relu(a, b, a_scale=1.0, b_scale=1.0, out_scale=1.0)
    np.testing.assert_array_equal(y, [0, 127, 0, 1, 0, 127])
    y = K.add(a, b, a_scale=1.0, b_scale=1.0, out_scale=1.0)
    np.testing.assert_array_equal(y, [-128, 127, -1, 1, -1, 127])
    y = K.add(a, b, a_scale=0.25, b_scale=0.25, out_scale=1.0)  # ties: 0.25*(a+b), e.g. -0.5 -> -1
    np.testing.assert_array_equal(y, O.add(a, b, 0.25, 0, 0.25, 0, 1.0, 0, "int8"))
    y = K.mul(a, b, a_scale=1.0, b_scale=1.0, out_scale=1.0)
    np.testing.assert_array_equal(y, [127, 127, 0, 0, 0, 127])
    yr = K.fuse_add_relu(a.view(np.uint8), b.view(np.uint8), a_scale=1.0, b_scale=1.0, out_scale=1.0,
                         a_zero_point=128, b_zero_point=128, out_zero_point=200)
    assert yr.min() >= 200


def test_just_below_half(isa):
    # v = 0.49999997f must round to 0 ("add 0.5 and truncate" would give 1).
    h = float(np.nextafter(np.float32(0.5), np.float32(0)))
    a = np.array([1, -1, 1, -1, 0] * 7, np.int8)
    b = np.zeros_like(a)
    y = K.add(a, b, a_scale=h, b_scale=1.0, out_scale=1.0)
    np.testing.assert_array_equal(y, 0)
    y = K.mul(a, np.ones_like(a), a_scale=h, b_scale=1.0, out_scale=1.0)
    np.testing.assert_array_equal(y, 0)
    y = K.add(a, b, a_scale=0.5, b_scale=1.0, out_scale=1.0)
    np.testing.assert_array_equal(y, np.where(a > 0, 1, np.where(a < 0, -1, 0)))


@pytest.mark.parametrize("op", OPS)
def test_broadcast_per_channel_and_scalar(isa, threads, op):
    rng = np.random.default_rng(22)
    for shape in [(2, 3, 5, 7), (1, 40, 41, 33), (3, 1, 1, 1), (5, 64), (1, 9, 9, 144)]:
        C = shape[-1]
        a = rand_q(rng, "int8", shape)
        for bshape in [(C,), (1, 1, 1, C)[-len(shape):], (), (1,), (1, 1)]:
            b = rand_q(rng, "uint8", bshape)
            check(op, a, b, 0.05, -3, 0.07, 130, 0.11, 4, "int8")
            check(op, b, a, 0.07, 130, 0.05, -3, 0.11, 4, "uint8")  # broadcast operand first


def test_views(isa, threads):
    rng = np.random.default_rng(21)
    big_a, big_b = rand_q(rng, "int8", (3, 17, 19, 40)), rand_q(rng, "uint8", (3, 17, 19, 40))
    for sl in [np.s_[1:, 2:, 3:, 5:37], np.s_[:, ::2, ::-1, ::3], np.s_[::-1]]:
        for op in OPS:
            check(op, big_a[sl], big_b[sl], 0.05, 3, 0.07, 130, 0.11, -2, "int8")
    a = rand_q(rng, "int8", (4, 6))
    check("add", a.T, a.T.copy(), 0.05, 3, 0.07, 0, 0.11, -2, "int8")


DTYPE_MIXES = [(da, db, do) for da in ("int8", "uint8") for db in ("int8", "uint8") for do in ("int8", "uint8")]


@pytest.mark.parametrize("op", OPS)
def test_every_tail_length_and_dtype_mix(isa, op):
    # n = 1..130 covers every tail of the 8 / 32 (AVX2) and 16 / 64 (AVX-512) value blocks, alone and after one
    # or two full blocks; each array has its extremes planted at both ends (saturation in the tail lanes).
    rng = np.random.default_rng(23)
    for da, db, do in DTYPE_MIXES:
        (alo, ahi), (blo, bhi) = O.RANGES[da], O.RANGES[db]
        za, zb, zo = rand_z(rng, da), rand_z(rng, db), rand_z(rng, do)
        sa, sb, so = (float(v) for v in rng.uniform(0.02, 0.3, 3))
        if op == "mul":
            so *= 10
        for n in range(1, 131):
            a, b = rand_q(rng, da, (n,)), rand_q(rng, db, (n,))
            a[0], a[-1] = alo, ahi
            b[0], b[-1] = bhi, blo if n > 1 else bhi
            check(op, a, b, sa, za, sb, zb, so, zo, do)


@pytest.mark.parametrize("op", OPS)
def test_saturation_in_every_lane(isa, op):
    # Scales that push most values past both ends of the output range, at lengths with full blocks and tails.
    rng = np.random.default_rng(24)
    for da, db, do in DTYPE_MIXES:
        for n in (63, 64, 65, 127, 128, 129, 200):
            a, b = rand_q(rng, da, (n,)), rand_q(rng, db, (n,))
            # the last two exceed the AVX-512 kernel's bound on |v| (its capped, general clamp path)
            scales = [(4.0, 3.0, 0.01), (1e-4, 2.0, 0.5), (1e3, 1e3, 1e-3), (1e5, 3e4, 1e-3), (3e4, 1e5, 1e-4)]
            for sa, sb, so in scales:
                check(op, a, b, sa, rand_z(rng, da), sb, rand_z(rng, db), so, rand_z(rng, do), do)


@pytest.mark.parametrize("op", OPS)
def test_broadcast_odd_channel_counts(isa, threads, op):
    # b broadcast over the channels (period C) for odd C around the vector widths, with the dtype mixes.
    rng = np.random.default_rng(25)
    for i, C in enumerate([1, 3, 7, 15, 17, 31, 33, 47, 63, 65, 95, 127, 129, 191, 257]):
        da, db, do = DTYPE_MIXES[i % len(DTYPE_MIXES)]
        a = rand_q(rng, da, (2, 3, 5, C))
        b = rand_q(rng, db, (C,))
        check(op, a, b, 0.04, rand_z(rng, da), 0.09, rand_z(rng, db), 0.13, rand_z(rng, do), do)
        check(op, b, a, 0.09, rand_z(rng, db), 0.04, rand_z(rng, da), 0.13, rand_z(rng, do), do)


def test_bad_arguments():
    a = np.zeros((2, 3, 4, 5), np.int8)
    kw = dict(a_scale=0.1, b_scale=0.1, out_scale=0.1)
    cases = [
        (TypeError, "^a:", lambda: K.add(a.astype(np.int16), a, **kw)),
        (TypeError, "^b:", lambda: K.add(a, a.astype(np.float32), **kw)),
        (TypeError, "^a:", lambda: K.add([1, 2], a, **kw)),
        (ValueError, "^b:", lambda: K.add(a, a[:, :, :, :4], **kw)),
        (ValueError, "^b:", lambda: K.mul(a, a[0], **kw)),
        (ValueError, "^b:", lambda: K.add(a, a[:, :, :, :1].copy(), **kw)),
        (ValueError, "^b:", lambda: K.add(a, np.zeros((5, 1), np.int8), **kw)),
        (ValueError, "^b:", lambda: K.add(a, np.zeros((1, 1, 1, 1, 5), np.int8), **kw)),
        (ValueError, "^a_scale:", lambda: K.add(a, a, a_scale=0.0, b_scale=0.1, out_scale=0.1)),
        (ValueError, "^b_scale:", lambda: K.mul(a, a, a_scale=0.1, b_scale=-1.0, out_scale=0.1)),
        (ValueError, "^out_scale:", lambda: K.fuse_add_relu(a, a, a_scale=0.1, b_scale=0.1, out_scale=float("nan"))),
        (ValueError, "^a_zero_point:", lambda: K.add(a, a, a_zero_point=128, **kw)),
        (ValueError, "^b_zero_point:", lambda: K.add(a, a.view(np.uint8), b_zero_point=-1, **kw)),
        (ValueError, "^out_zero_point:", lambda: K.add(a, a, out_zero_point=-129, **kw)),
        (ValueError, "^out_zero_point:", lambda: K.add(a, a, out_zero_point=-1, out_dtype="uint8", **kw)),
        (ValueError, "^out_dtype:", lambda: K.add(a, a, out_dtype="int32", **kw)),
    ]
    for exc, match, fn in cases:
        with pytest.raises(exc, match=match):
            fn()
