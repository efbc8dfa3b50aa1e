"""megq.kernels.prepare_gemm / prepare_conv2d / prepare_depthwise_conv2d: the prepared callable gives the one-shot
wrapper's bytes (and the independent oracle's values) on every usable ISA, for many inputs in a row; its bound
arguments are refused at preparation exactly as the wrapper refuses them; bad inputs raise TypeError/ValueError."""
from __future__ import annotations

import numpy as np
import pytest

import megq.kernels as K
import oracles.ops as O
from oracles.conv import oracle_conv
from oracles.gemm import oracle_gemm


def rand_q(rng, dtype, shape):
    lo, hi = O.RANGES[dtype]
    return rng.integers(lo, hi + 1, shape).astype(dtype)


def same_error(call_a, call_b):
    """Both calls raise the same exception type with the same message (TypeError or ValueError)."""
    with pytest.raises((TypeError, ValueError)) as a:
        call_a()
    with pytest.raises((TypeError, ValueError)) as b:
        call_b()
    assert type(a.value) is type(b.value) and str(a.value) == str(b.value)


# -- gemm ----------------------------------------------------------------------------------------------------------

GEMM_CASES = [  # (K, N, input dtype, input zero point, out dtype, out zero point, clamp, per-channel)
    (7, 5, "int8", 0, "int8", 0, None, False),
    (64, 33, "uint8", 128, "uint8", 100, (100, 255), True),
    (300, 16, "int8", -3, "int32", 0, None, True),
    (1, 1, "uint8", 7, "int8", -5, (-20, 20), False),
]


@pytest.mark.parametrize("case", GEMM_CASES)
def test_prepared_gemm_matches_wrapper_and_oracle(isa, case):
    k, n, in_dtype, z_in, out_dtype, z_out, clamp, per_channel = case
    rng = np.random.default_rng(k * 31 + n)
    w = rng.integers(-127, 128, (k, n)).astype(np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    mult = (rng.uniform(0.5, 2, n) if per_channel else np.float32(1.0)) / np.float32(64 * np.sqrt(k))
    mult = np.asarray(mult, np.float32)
    packed = K.pack_gemm_weights(w, bias, mult, input_dtype=in_dtype, input_zero_point=z_in)
    lo, hi = clamp if clamp else (None, None)
    out = dict(out_dtype=out_dtype, out_zero_point=z_out, out_min=lo, out_max=hi)
    f = K.prepare_gemm(packed, **out)
    for m in (1, 5, 64, 0):
        a = rand_q(rng, in_dtype, (m, k))
        got = f(a)
        np.testing.assert_array_equal(got, K.gemm(a, packed, **out))
        assert got.dtype == np.dtype(out_dtype) and got.shape == (m, n)
        np.testing.assert_array_equal(got, oracle_gemm(a, w, bias, mult, a_zero_point=z_in, **out))
    rows = rand_q(rng, in_dtype, (9, k + 4))[::2, 2:k + 2]  # a strided view: any row stride is allowed
    np.testing.assert_array_equal(f(rows), K.gemm(rows, packed, **out))


def test_prepared_gemm_rejects_bad_inputs():
    rng = np.random.default_rng(0)
    packed = K.pack_gemm_weights(rng.integers(-127, 128, (8, 4)).astype(np.int8), None, np.float32(0.01))
    f = K.prepare_gemm(packed)
    with pytest.raises(TypeError, match="a: expected a numpy array"):
        f([[0] * 8])
    with pytest.raises(TypeError, match="a:"):
        f(np.zeros((2, 8), np.uint8))  # packed for int8
    with pytest.raises(TypeError, match="a:"):
        f(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="a:"):
        f(np.zeros((2, 2, 8), np.int8))  # rank
    with pytest.raises(ValueError, match="K=7"):
        f(np.zeros((2, 7), np.int8))
    with pytest.raises(ValueError, match="a: rows must be contiguous"):
        f(np.zeros((2, 16), np.int8)[:, ::2])


@pytest.mark.parametrize("bad", [
    dict(out_dtype="float32"), dict(out_dtype=3.5), dict(out_zero_point=200), dict(out_zero_point=1.5),
    dict(out_min=10, out_max=5), dict(out_min=-129), dict(out_max="7"),
])
def test_prepare_gemm_refuses_what_gemm_refuses(bad):
    rng = np.random.default_rng(1)
    packed = K.pack_gemm_weights(rng.integers(-127, 128, (8, 4)).astype(np.int8), None, np.float32(0.01))
    same_error(lambda: K.prepare_gemm(packed, **bad), lambda: K.gemm(np.zeros((1, 8), np.int8), packed, **bad))


def test_prepare_gemm_refuses_other_packed_weights():
    rng = np.random.default_rng(2)
    conv = K.pack_conv2d_weights(rng.integers(-127, 128, (4, 2, 1, 1)).astype(np.int8), None, np.float32(0.01))
    for packed in (conv, np.zeros((8, 4), np.int8), None):
        with pytest.raises(TypeError, match="packed: expected PackedGemmWeights"):
            K.prepare_gemm(packed)


# -- conv2d --------------------------------------------------------------------------------------------------------

CONV_CASES = [  # (C_in, C_out, kernel, groups, stride, padding, dilation, input dtype, z_in, out dtype, z_out, clamp)
    (3, 8, (3, 3), 1, 1, 1, 1, "int8", 0, "int8", 0, None),
    (8, 16, (1, 1), 1, 1, 0, 1, "uint8", 128, "uint8", 3, (3, 255)),
    (6, 4, (3, 2), 2, (2, 1), (0, 1), (1, 2), "int8", -7, "int8", 5, (-100, 90)),
    (4, 4, (5, 5), 1, 2, 2, 1, "uint8", 0, "int32", 0, None),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_prepared_conv2d_matches_wrapper_and_oracle(isa, case):
    cin, cout, (kh, kw), groups, stride, padding, dilation, in_dtype, z_in, out_dtype, z_out, clamp = case
    rng = np.random.default_rng(cin * 7 + cout)
    w = rng.integers(-127, 128, (cout, cin // groups, kh, kw)).astype(np.int8)
    bias = rng.integers(-3000, 3000, cout).astype(np.int32)
    mult = (rng.uniform(0.5, 2, cout) / (64 * np.sqrt(kh * kw * cin))).astype(np.float32)
    packed = K.pack_conv2d_weights(w, bias, mult, groups=groups, input_dtype=in_dtype, input_zero_point=z_in)
    lo, hi = clamp if clamp else (None, None)
    geometry = dict(stride=stride, padding=padding, dilation=dilation)
    out = dict(out_dtype=out_dtype, out_zero_point=z_out, out_min=lo, out_max=hi)
    f = K.prepare_conv2d(packed, **geometry, **out)
    for shape in ((1, 9, 9, cin), (3, 6, 11, cin), (0, 7, 7, cin)):
        x = rand_q(rng, in_dtype, shape)
        got = f(x)
        np.testing.assert_array_equal(got, K.conv2d(x, packed, **geometry, **out))
        assert got.dtype == np.dtype(out_dtype)
        want = oracle_conv(x, w, bias, mult, groups=groups, x_zero_point=z_in, **geometry, **out)
        np.testing.assert_array_equal(got, want)
    view = rand_q(rng, in_dtype, (2, 10, 10, cin + 3))[:, 1:, ::2, 1:cin + 1]  # strided, channels contiguous
    np.testing.assert_array_equal(f(view), K.conv2d(view, packed, **geometry, **out))


def test_prepared_conv2d_rejects_bad_inputs():
    rng = np.random.default_rng(3)
    packed = K.pack_conv2d_weights(rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), None, np.float32(0.01))
    f = K.prepare_conv2d(packed, padding=1)
    with pytest.raises(TypeError, match="x: expected a numpy array"):
        f(None)
    with pytest.raises(TypeError, match="x:"):
        f(np.zeros((1, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="x:"):
        f(np.zeros((4, 4, 3), np.int8))  # rank
    with pytest.raises(ValueError, match="x: has 2 channels"):
        f(np.zeros((1, 4, 4, 2), np.int8))
    with pytest.raises(ValueError, match="x: channels must be contiguous"):
        f(np.zeros((1, 4, 4, 6), np.int8)[..., ::2])
    g = K.prepare_conv2d(packed)  # no padding: a 2x2 input is smaller than the 3x3 kernel
    with pytest.raises(ValueError, match="x:"):
        g(np.zeros((1, 2, 2, 3), np.int8))


@pytest.mark.parametrize("bad", [
    dict(stride=0), dict(stride=(1, 0)), dict(stride="1"), dict(stride=(1, 1, 1)), dict(padding=-1),
    dict(dilation=0), dict(dilation=1.0), dict(out_dtype="int16"), dict(out_zero_point=128), dict(out_min=3, out_max=2),
])
def test_prepare_conv2d_refuses_what_conv2d_refuses(bad):
    rng = np.random.default_rng(4)
    packed = K.pack_conv2d_weights(rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), None, np.float32(0.01))
    same_error(lambda: K.prepare_conv2d(packed, **bad),
               lambda: K.conv2d(np.zeros((1, 8, 8, 3), np.int8), packed, **bad))


# -- depthwise conv2d ----------------------------------------------------------------------------------------------

DEPTHWISE_CASES = [  # (C_in, channel multiplier, kernel, stride, padding, dilation, input dtype, z_in, z_out, clamp)
    (16, 1, (3, 3), (1, 1), (1, 1), (1, 1), "int8", 0, 0, None),
    (5, 2, (3, 3), (2, 2), (1, 1), (1, 1), "uint8", 128, 10, (10, 255)),
    (24, 1, (5, 5), (1, 2), (2, 0), (2, 1), "int8", -4, -2, (-2, 127)),
]


@pytest.mark.parametrize("case", DEPTHWISE_CASES)
def test_prepared_depthwise_matches_wrapper_and_oracle(isa, case):
    c, m, (kh, kw), stride, padding, dilation, in_dtype, z_in, z_out, clamp = case
    rng = np.random.default_rng(c * 3 + m)
    w = rng.integers(-127, 128, (c * m, kh, kw)).astype(np.int8)
    bias = rng.integers(-3000, 3000, c * m).astype(np.int32)
    mult = (rng.uniform(0.5, 2, c * m) / (128 * np.sqrt(kh * kw))).astype(np.float32)
    packed = K.pack_depthwise_weights(w, bias, mult, in_channels=c, input_dtype=in_dtype, input_zero_point=z_in)
    lo, hi = clamp if clamp else (None, None)
    out = dict(out_dtype=in_dtype, out_zero_point=z_out, out_min=lo, out_max=hi)
    f = K.prepare_depthwise_conv2d(packed, stride=stride, padding=padding, dilation=dilation, **out)
    for shape in ((1, 9, 9, c), (2, 12, 7, c), (0, 9, 9, c)):
        x = rand_q(rng, in_dtype, shape)
        got = f(x)
        np.testing.assert_array_equal(got, K.depthwise_conv2d(x, packed, stride, padding, dilation, **out))
        want = O.depthwise(x, w, bias, mult, z_x=z_in, stride=stride, padding=padding, dilation=dilation,
                           multiplier=m, z_y=z_out, out_dtype=in_dtype, lo=lo, hi=hi)
        np.testing.assert_array_equal(got, want)
    view = rand_q(rng, in_dtype, (2, 11, 11, 2 * c))[:, 1:, :, ::2]  # channels strided: copied by the extension
    np.testing.assert_array_equal(f(view), K.depthwise_conv2d(view, packed, stride, padding, dilation, **out))


def test_prepared_depthwise_rejects_bad_inputs():
    rng = np.random.default_rng(5)
    packed = K.pack_depthwise_weights(rng.integers(-127, 128, (8, 3, 3)).astype(np.int8), None, np.float32(0.01))
    f = K.prepare_depthwise_conv2d(packed, padding=1)
    with pytest.raises(TypeError, match="x: expected a numpy array"):
        f([1, 2, 3])
    with pytest.raises(TypeError, match="x:"):
        f(np.zeros((1, 4, 4, 8), np.uint8))
    with pytest.raises(TypeError, match="x:"):
        f(np.zeros((1, 4, 4, 8), np.int16))
    with pytest.raises(ValueError, match="x:"):
        f(np.zeros((4, 4, 8), np.int8))
    with pytest.raises(ValueError, match="x: has C=4 channels"):
        f(np.zeros((1, 4, 4, 4), np.int8))


@pytest.mark.parametrize("bad", [
    dict(stride=0), dict(stride=(1, 2, 3)), dict(padding=-1), dict(padding="1"), dict(dilation=0),
    dict(out_dtype="int32"), dict(out_zero_point=-129), dict(out_min=5, out_max=4),
])
def test_prepare_depthwise_refuses_what_depthwise_refuses(bad):
    rng = np.random.default_rng(6)
    packed = K.pack_depthwise_weights(rng.integers(-127, 128, (8, 3, 3)).astype(np.int8), None, np.float32(0.01))
    geometry = {k: bad.pop(k) for k in ("stride", "padding", "dilation") if k in bad}
    same_error(lambda: K.prepare_depthwise_conv2d(packed, **geometry, **bad),
               lambda: K.depthwise_conv2d(np.zeros((1, 8, 8, 8), np.int8), packed, **geometry, **bad))
