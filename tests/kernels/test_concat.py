"""megq.kernels.concat (channel axis, per-input qparams) against an independent numpy oracle."""
from __future__ import annotations

import numpy as np
import pytest

import megq.kernels as K
import oracles.ops as O
from megq import reference


def rand_q(rng, dtype, shape):
    lo, hi = O.RANGES[dtype]
    return rng.integers(lo, hi + 1, shape).astype(dtype)


def rand_z(rng, dtype):
    lo, hi = O.RANGES[dtype]
    return int(rng.integers(lo, hi + 1))


def check(inputs, scales, zps, so, zo, od):
    got = K.concat(inputs, scales, zps, out_scale=so, out_zero_point=zo, out_dtype=od)
    want = O.concat(inputs, list(zip(scales, zps)), so, zo, od)
    assert got.dtype == np.dtype(od) and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(reference.concat(inputs, scales, zps, so, zo, od), want)
    return got


def test_channel_sweep(isa, threads):
    rng = np.random.default_rng(40)
    for c1 in list(range(1, 34)) + [64, 96, 144]:
        c2 = int(rng.integers(1, 40))
        for od in ["int8", "uint8"]:
            d1, d2 = rng.choice(["int8", "uint8"], 2)
            x1, x2 = rand_q(rng, d1, (2, 3, 5, c1)), rand_q(rng, d2, (2, 3, 5, c2))
            s = [float(v) for v in rng.uniform(0.01, 1, 2)]
            check([x1, x2], s, [rand_z(rng, d1), rand_z(rng, d2)], float(rng.uniform(0.01, 1)), rand_z(rng, od), od)


def test_many_inputs_identity_and_large(isa, threads):
    rng = np.random.default_rng(41)
    xs = [rand_q(rng, "int8", (2, 31, 29, c)) for c in (16, 24, 3, 96, 1)]
    scales = [0.1, 0.2, 0.1, 0.05, 0.3]
    zps = [0, 0, 0, -3, 4]
    y = check(xs, scales, zps, 0.1, 0, "int8")
    np.testing.assert_array_equal(y[..., :16], xs[0])          # identical qparams: exact copy
    np.testing.assert_array_equal(y[..., 40:43], xs[2])
    y = check([xs[0]], [0.1], [0], 0.1, 0, "int8")
    np.testing.assert_array_equal(y, xs[0])
    check([rand_q(rng, "uint8", (4, 9)), rand_q(rng, "uint8", (4, 5))], [0.5, 0.25], [128, 0], 1.0, 128, "uint8")


def test_ties_and_extremes(isa):
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16, 1)
    xu = np.arange(0, 256).astype(np.uint8).reshape(1, 16, 16, 1)
    for s_in, s_out in [(1.0, 2.0), (3.0, 2.0), (1e-3, 10.0), (10.0, 1e-3), (0.1, 0.3)]:
        check([x, xu, x], [s_in, s_in, 1.0], [0, 128, -128], s_out, 0, "int8")
        check([xu, x], [s_in, s_in], [255, 127], s_out, 255, "uint8")


def test_views(isa):
    rng = np.random.default_rng(42)
    big = rand_q(rng, "int8", (3, 10, 12, 40))
    check([big[:, ::2, 1:, 3:17], big[:, 1::2, :-1, ::3], big[:, ::-2, :0:-1, 5:6]], [0.1, 0.2, 0.3], [1, 2, 3],
          0.15, -1, "int8")


def test_bad_arguments():
    a = np.zeros((1, 2, 3, 4), np.int8)
    b = np.zeros((1, 2, 3, 5), np.uint8)
    kw = dict(out_scale=0.1)
    cases = [
        (TypeError, "^inputs:", lambda: K.concat(a, [0.1], [0], **kw)),
        (ValueError, "^inputs:", lambda: K.concat([], [], [], **kw)),
        (TypeError, r"^inputs\[1\]:", lambda: K.concat([a, b.astype(np.int16)], [0.1, 0.1], [0, 0], **kw)),
        (ValueError, r"^inputs\[1\]:", lambda: K.concat([a, b[:, :1]], [0.1, 0.1], [0, 0], **kw)),
        (ValueError, r"^inputs\[1\]:", lambda: K.concat([a, b[0]], [0.1, 0.1], [0, 0], **kw)),
        (ValueError, "^scales:", lambda: K.concat([a, b], [0.1], [0, 0], **kw)),
        (ValueError, "^zero_points:", lambda: K.concat([a, b], [0.1, 0.1], [0], **kw)),
        (ValueError, r"^scales\[1\]:", lambda: K.concat([a, b], [0.1, 0.0], [0, 0], **kw)),
        (ValueError, r"^zero_points\[1\]:", lambda: K.concat([a, b], [0.1, 0.1], [0, -1], **kw)),
        (ValueError, r"^zero_points\[0\]:", lambda: K.concat([a, b], [0.1, 0.1], [128, 0], **kw)),
        (ValueError, "^out_scale:", lambda: K.concat([a, b], [0.1, 0.1], [0, 0], out_scale=-1.0)),
        (ValueError, "^out_zero_point:", lambda: K.concat([a, b], [0.1, 0.1], [0, 0], out_scale=0.1,
                                                          out_zero_point=300)),
        (ValueError, "^out_dtype:", lambda: K.concat([a, b], [0.1, 0.1], [0, 0], out_scale=0.1,
                                                     out_dtype="float32")),
    ]
    for exc, match, fn in cases:
        with pytest.raises(exc, match=match):
            fn()
