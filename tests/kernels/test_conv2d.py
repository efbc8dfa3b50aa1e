"""megq.kernels.conv2d against an independent numpy oracle (direct loops over taps), bit for bit."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import megq.kernels as K
from megq import reference
from oracles.gemm import RANGES, round_half_away_f64


def oracle_conv(x, w, bias, mult, *, stride, padding, dilation, groups, zx, out_dtype="int8", zy=0,
                lo=None, hi=None):
    """Direct convolution: for every tap, shift the zero-padded input and accumulate in int64."""
    n, h, wd, cin = x.shape
    cout, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    padded = np.zeros((n, h + 2 * ph, wd + 2 * pw, cin), np.int64)
    padded[:, ph:ph + h, pw:pw + wd] = x.astype(np.int64) - zx  # padding is real zero
    acc = np.zeros((n, oh, ow, cout), np.int64)
    og = cout // groups
    for co in range(cout):
        g = co // og
        for ky, kx in itertools.product(range(kh), range(kw)):
            rows = padded[:, ky * dh::sh][:, :oh, kx * dw::sw][:, :, :ow, g * cg:(g + 1) * cg]
            acc[..., co] += rows @ w[co, :, ky, kx].astype(np.int64)
    if bias is not None:
        acc += bias
    if out_dtype == "int32":
        return acc.astype(np.int32)
    lo_d, hi_d = RANGES[out_dtype]
    v = acc.astype(np.float32) * np.asarray(mult, np.float32)
    y = round_half_away_f64(v) + zy
    return np.clip(y, lo_d if lo is None else lo, hi_d if hi is None else hi).astype(out_dtype)


def check(rng, n, h, w, cin, cout, kh, kw, stride=1, padding=0, dilation=1, groups=1, *, a_dtype="int8",
          zx=0, per_channel=True, out_dtype="int8", zy=0, x=None):
    lo, hi = RANGES[a_dtype]
    if x is None:
        x = rng.integers(lo, hi + 1, (n, h, w, cin)).astype(a_dtype)
    wt = rng.integers(-127, 128, (cout, cin // groups, kh, kw)).astype(np.int8)
    b = rng.integers(-2000, 2000, cout).astype(np.int32)
    scale = 1.0 / (64.0 * np.sqrt(kh * kw * cin / groups))
    m = (rng.uniform(0.5, 2, cout) * scale).astype(np.float32) if per_channel else np.float32(scale)
    pk = K.pack_conv2d_weights(wt, b, m, groups=groups, input_dtype=a_dtype, input_zero_point=zx)
    p2 = lambda v: (v, v) if np.isscalar(v) else tuple(v)  # noqa: E731
    got = K.conv2d(x, pk, stride=stride, padding=padding, dilation=dilation, out_dtype=out_dtype,
                   out_zero_point=zy)
    want = oracle_conv(x, wt, b, m, stride=p2(stride), padding=p2(padding), dilation=p2(dilation),
                       groups=groups, zx=zx, out_dtype=out_dtype, zy=zy)
    np.testing.assert_array_equal(got, want)
    return x, wt, b, m, got


def test_channel_counts_1_to_33(isa, threads):
    rng = np.random.default_rng(10)
    for c in range(1, 34):
        check(rng, 1, 5, 6, c, 3, 3, 3, padding=1)
        check(rng, 1, 4, 3, 2, c, 3, 3, padding=1)
        check(rng, 1, 3, 5, c, 35 - c, 1, 1)


@pytest.mark.parametrize("kernel", [1, 2, 3, 5, 7])
def test_stride_padding_dilation_sweep(isa, kernel):
    rng = np.random.default_rng(11)
    for stride, padding, dilation in itertools.product([1, 2, 3], [0, 1, 3], [1, 2]):
        if (kernel - 1) * dilation + 1 > 11 + 2 * padding:
            continue
        check(rng, 1, 11, 9 + kernel, 5, 7, kernel, kernel, stride, padding, dilation)


@pytest.mark.parametrize("groups,cin,cout", [(2, 8, 6), (4, 8, 12), (3, 9, 3), (8, 16, 16)])
def test_groups(isa, threads, groups, cin, cout):
    rng = np.random.default_rng(12)
    check(rng, 2, 7, 6, cin, cout, 3, 3, 1, 1, groups=groups)
    check(rng, 1, 8, 8, cin, cout, 1, 1, 2, 0, groups=groups)
    check(rng, 1, 8, 8, cin, cout, 1, 1, 1, 0, groups=groups)


def test_batch_rectangular_and_asymmetric_args(isa, threads):
    rng = np.random.default_rng(13)
    check(rng, 3, 13, 7, 6, 10, 3, 5, (2, 1), (1, 2), (1, 2))
    check(rng, 4, 9, 9, 16, 24, 1, 1, (2, 2))  # 1x1 stride 2 (downsample), read in place
    check(rng, 3, 5, 4, 24, 40, 1, 1)          # 1x1 stride 1 over the batch: one GEMM


@pytest.mark.parametrize("a_dtype,zx", [("int8", 0), ("int8", -9), ("uint8", 128), ("uint8", 7)])
@pytest.mark.parametrize("out_dtype,zy", [("int8", 0), ("uint8", 128), ("int32", 0)])
def test_zero_points_and_output_types(isa, a_dtype, zx, out_dtype, zy):
    rng = np.random.default_rng(14)
    check(rng, 1, 9, 8, 7, 19, 3, 3, 2, 2, a_dtype=a_dtype, zx=zx, out_dtype=out_dtype, zy=zy)
    check(rng, 1, 6, 6, 7, 19, 1, 1, a_dtype=a_dtype, zx=zx, out_dtype=out_dtype, zy=zy, per_channel=False)


def test_extreme_values(isa):
    x = np.full((1, 6, 6, 40), -128, np.int8)
    wt = np.full((9, 40, 3, 3), -128, np.int8)
    pk = K.pack_conv2d_weights(wt, narrow_range=False)
    got = K.conv2d(x, pk, padding=1, out_dtype="int32")
    want = oracle_conv(x, wt, None, None, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1, zx=0,
                       out_dtype="int32")
    np.testing.assert_array_equal(got, want)
    assert got[0, 2, 2, 0] == 9 * 40 * 128 * 128


def test_offset_and_strided_input_views(isa, threads):
    rng = np.random.default_rng(15)
    big = rng.integers(-128, 128, (2, 20, 30, 24)).astype(np.int8)
    for view in (big[:, 3:14, 5:17, 4:12], big[:, ::2, ::3, :8], big[1:, ::-1, 2:9, 16:], big[:, 2:9, ::-1, :8],
                 big[:, :, -7:, -3:]):
        assert not view.flags.c_contiguous
        check(rng, *view.shape, 9, 3, 3, 1, 1, x=view)
        check(rng, *view.shape, 9, 1, 1, 1, 0, x=view)
        check(rng, *view.shape, 9, 1, 1, 2, 0, x=view)


@pytest.mark.parametrize("out_dtype,zy", [("int8", -3), ("uint8", 128), ("int32", 0)])
def test_whole_k_groups_and_tails(isa, threads, out_dtype, zy):
    """K a multiple of 4 or not, uint8 (read in place when whole) and int8 inputs, Cout around the 16/32/64
    column tiles, pixel counts around the row tiles, stride 1 and 2 with padding, tiny images."""
    rng = np.random.default_rng(17)
    shapes = [(4, 33, 3, 5), (8, 64, 3, 9), (16, 96, 1, 11), (24, 31, 1, 7), (12, 65, 1, 3), (3, 64, 7, 12),
              (3, 17, 7, 3), (64, 64, 3, 6), (20, 48, 1, 1), (2, 1, 3, 2)]
    for cin, cout, k, hw in shapes:
        for (a_dtype, zx), stride in itertools.product((("uint8", 128), ("int8", 5)), (1, 2)):
            check(rng, 1, hw, hw + 1, cin, cout, k, k, stride, k // 2, a_dtype=a_dtype, zx=zx,
                  out_dtype=out_dtype, zy=zy)


@pytest.mark.parametrize("a_dtype,zx", [("uint8", 128), ("int8", 0), ("int8", -7)])
def test_wide_rows_at_unit_x_stride(isa, threads, a_dtype, zx):
    """Output rows of 16+ pixels at x stride 1 (read in place from each output row's input rows on AVX-512 VNNI
    when Cin is a multiple of 4), with y strides, dilations and paddings around them, and a strided view."""
    rng = np.random.default_rng(18)
    for cin, cout, kh, kw, stride, padding, dilation in [
            (8, 33, 3, 3, 1, 1, 1), (4, 64, 3, 3, (2, 1), 1, 1), (12, 17, 5, 3, 1, (2, 1), (2, 1)),
            (16, 70, 1, 3, 1, (0, 1), 1), (8, 9, 3, 1, 1, 0, 1), (64, 64, 3, 3, 1, 1, 1), (6, 20, 3, 3, 1, 1, 1)]:
        check(rng, 2, 7, 21, cin, cout, kh, kw, stride, padding, dilation, a_dtype=a_dtype, zx=zx)
    big = rng.integers(-128, 128, (1, 9, 40, 24)).astype(a_dtype)
    check(rng, *big[:, ::2, 3:37, 4:12].shape, 9, 3, 3, 1, 1, a_dtype=a_dtype, zx=zx, x=big[:, ::2, 3:37, 4:12])


@pytest.mark.parametrize("a_dtype,zx", [("int8", 0), ("uint8", 128), ("int8", -5)])
def test_few_channel_strided_patches(isa, threads, a_dtype, zx):
    """Stems and other few-channel strided convs (gathered patch rows of up to 256 bytes, built in registers on
    AVX-512 VNNI): kernels 1..7 with their padding rows at the image's top and bottom, y dilation, the columns
    near the left and right borders, odd widths, a batch of two (pixel runs crossing rows and images)."""
    rng = np.random.default_rng(19)
    for cin, k, stride, padding, dilation, hw in [
            (3, 3, 2, 1, 1, (15, 17)), (3, 3, 2, 1, 1, (8, 9)), (1, 3, 2, 1, 1, (9, 13)), (2, 5, 2, 2, 1, (11, 10)),
            (3, 7, 2, 3, 1, (13, 15)), (4, 3, 3, 1, (2, 1), (12, 14)), (3, 5, (2, 1), (1, 2), 1, (9, 16)),
            (5, 3, 2, 0, 1, (9, 9)), (3, 1, 2, 0, 1, (7, 9)), (1, 7, 2, 3, 1, (10, 12)), (7, 3, 2, 1, 1, (6, 11)),
            (1, 8, 2, 3, 1, (12, 13)), (1, 9, 2, 4, 1, (12, 11))]:
        check(rng, 2, *hw, cin, 19, k, k, stride, padding, dilation, a_dtype=a_dtype, zx=zx)


def test_resnet_and_mobilenet_shapes(isa):
    rng = np.random.default_rng(16)
    check(rng, 1, 32, 32, 3, 16, 7, 7, 2, 3)     # stem
    check(rng, 1, 14, 14, 64, 64, 3, 3, 1, 1)
    check(rng, 1, 14, 14, 64, 128, 3, 3, 2, 1)
    check(rng, 1, 14, 14, 32, 96, 1, 1)         # expansion
    check(rng, 1, 7, 7, 96, 24, 1, 1)           # projection


def test_reference_conv_matches_oracle():
    rng = np.random.default_rng(17)
    x = rng.integers(0, 256, (2, 9, 8, 6)).astype(np.uint8)
    wt = rng.integers(-127, 128, (8, 3, 3, 2)).astype(np.int8)
    b = rng.integers(-100, 100, 8).astype(np.int32)
    m = rng.uniform(1e-3, 1e-2, 8).astype(np.float32)
    got = reference.conv2d(x, wt, b, m, stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2,
                           input_zero_point=100, out_dtype="uint8", out_zero_point=10)
    want = oracle_conv(x, wt, b, m, stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, zx=100,
                       out_dtype="uint8", zy=10)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("call,exc,match", [
    (lambda pk: K.conv2d(np.ones((1, 5, 5, 4), np.float32), pk), TypeError, "x: expected dtype int8"),
    (lambda pk: K.conv2d(np.ones((5, 5, 4), np.int8), pk), ValueError, "x: expected a 4-D NHWC"),
    (lambda pk: K.conv2d(np.ones((1, 5, 5, 3), np.int8), pk), ValueError, "x: has 3 channels but"),
    (lambda pk: K.conv2d(np.ones((1, 5, 5, 8), np.int8)[..., ::2], pk), ValueError, "x: channels must be"),
    (lambda pk: K.conv2d(np.ones((1, 2, 2, 4), np.int8), pk), ValueError, "x: the kernel .* larger than"),
    (lambda pk: K.conv2d(np.ones((1, 5, 5, 4), np.int8), pk, padding=-1), ValueError, "padding: must be"),
    (lambda pk: K.conv2d(np.ones((1, 5, 5, 4), np.int8), pk, stride=0), ValueError, "stride: must be"),
    (lambda pk: K.conv2d(np.ones((1, 5, 5, 4), np.int8), pk, dilation=(1, 0)), ValueError, "dilation: must"),
    (lambda pk: K.conv2d(np.ones((1, 5, 5, 4), np.int8), pk, stride=(1, 2, 3)), TypeError, "stride: expected"),
    (lambda pk: K.conv2d(np.ones((1, 5, 5, 4), np.int8), pk, out_zero_point=300), ValueError, "out_zero_point"),
    (lambda pk: K.conv2d(np.ones((1, 5, 5, 4), np.int8), "w"), TypeError, "packed: expected PackedConv2d"),
])
def test_bad_conv_inputs(call, exc, match):
    pk = K.pack_conv2d_weights(np.ones((6, 4, 3, 3), np.int8), None, np.float32(0.01))
    with pytest.raises(exc, match=match):
        call(pk)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(weight=np.ones((6, 4, 3), np.int8)), ValueError, "weight: expected a 4-D"),
    (dict(weight=np.ones((6, 4, 3, 3), np.int16)), TypeError, "weight: expected dtype int8"),
    (dict(weight=np.ones((6, 4, 3, 3), np.int8), groups=4), ValueError, "groups: 4 must be >= 1 and divide"),
    (dict(weight=np.ones((6, 4, 3, 3), np.int8), groups=0), ValueError, "groups: 0"),
    (dict(weight=np.ones((6, 4, 3, 3), np.int8), bias=np.ones(5, np.int32)), ValueError, "bias: expected Cout"),
    (dict(weight=np.ones((6, 4, 3, 3), np.int8), multiplier=np.ones(4, np.float32)), ValueError,
     "multiplier: expected 1 or Cout"),
    (dict(weight=np.ones((6, 4, 3, 3), np.int8), multiplier=-1.0), ValueError, "multiplier: every value"),
    (dict(weight=np.full((6, 4, 3, 3), -128, np.int8)), ValueError, "weight: value -128"),
])
def test_bad_conv_weights(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        K.pack_conv2d_weights(**kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Inputs whose bytes are all < 128 (ReLU outputs): the AVX2 exact 7-bit path. The padding taps carry the zero point's
# byte, so a zero point outside [0, 127] (as a byte) makes every tile that touches padding fall back, and any input
# byte >= 128 makes its tile fall back. Every ISA must give the oracle's bits.

SEVEN_BIT_CONV_ZPS = [("int8", 0), ("int8", 9), ("int8", -3), ("uint8", 0), ("uint8", 100), ("uint8", 127),
                      ("uint8", 128), ("uint8", 200)]


def seven_bit_x(rng, shape, dtype):
    return rng.integers(0, 128, shape).astype(dtype)


@pytest.mark.parametrize("a_dtype,zx", SEVEN_BIT_CONV_ZPS)
def test_7bit_conv_shapes_and_padding(isa, threads, a_dtype, zx):
    rng = np.random.default_rng(50)
    for kernel, stride, padding, dilation, cin, cout, groups in [
            (3, 1, 1, 1, 16, 24, 1), (3, 2, 1, 1, 8, 17, 1), (7, 2, 3, 1, 3, 16, 1), (1, 1, 0, 1, 40, 33, 1),
            (1, 2, 0, 1, 12, 9, 1), (3, 1, 2, 2, 5, 7, 1), (3, 1, 1, 1, 8, 12, 2), (1, 1, 0, 1, 8, 6, 2),
            (5, 3, 2, 1, 6, 31, 1)]:
        x = seven_bit_x(rng, (2, 9, 11, cin), a_dtype)
        check(rng, 2, 9, 11, cin, cout, kernel, kernel, stride, padding, dilation, groups, a_dtype=a_dtype, zx=zx,
              x=x)


def test_7bit_conv_channel_tails(isa):
    rng = np.random.default_rng(51)
    for c in range(1, 34):
        for a_dtype, zx in [("int8", 0), ("uint8", 128)]:
            x = seven_bit_x(rng, (1, 6, 7, c), a_dtype)
            check(rng, 1, 6, 7, c, 3 + c % 5, 3, 3, padding=1, a_dtype=a_dtype, zx=zx, x=x)
            check(rng, 1, 6, 7, c, 17, 1, 1, a_dtype=a_dtype, zx=zx, x=x)


def test_7bit_conv_largest_pair_sums(isa):
    """x = 127 everywhere, weights all -128 / all 127 / alternating: every pair sum at its bound, padding = z."""
    for cin, kernel, padding in [(64, 3, 1), (3, 7, 3), (5, 3, 0), (33, 1, 0)]:
        x = np.full((1, 7, 9, cin), 127, np.int8)
        kk = kernel * kernel * cin
        wt = np.empty((40, cin, kernel, kernel), np.int8)
        wt[:16] = -128
        wt[16:32] = 127
        wt[32:] = np.where(np.arange(kk).reshape(cin, kernel, kernel) % 2 == 0, -128, 127)
        for a_dtype, zx in [("int8", 0), ("int8", 127), ("uint8", 0), ("uint8", 255)]:
            pk = K.pack_conv2d_weights(wt, None, None, input_dtype=a_dtype, input_zero_point=zx, narrow_range=False)
            got = K.conv2d(x.astype(a_dtype), pk, padding=padding, out_dtype="int32")
            want = oracle_conv(x.astype(a_dtype), wt, None, None, stride=(1, 1), padding=(padding, padding),
                               dilation=(1, 1), groups=1, zx=zx, out_dtype="int32")
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("a_dtype,zx,bad", [("uint8", 0, 128), ("uint8", 50, 255), ("int8", 0, -1),
                                            ("int8", 4, -128)])
def test_7bit_conv_one_ineligible_byte_at_every_pixel(isa, a_dtype, zx, bad):
    """A byte >= 128 at each input pixel in turn (last channel), for 3x3 padded, 1x1 dense and 1x1 strided convs."""
    rng = np.random.default_rng(52)
    h, wd, cin = 6, 7, 5
    base = seven_bit_x(rng, (1, h, wd, cin), a_dtype)
    wt3 = rng.choice(np.array([-128, 127], np.int8), (19, cin, 3, 3))
    wt1 = rng.choice(np.array([-128, 127], np.int8), (19, cin, 1, 1))
    packs = [(K.pack_conv2d_weights(w, None, None, input_dtype=a_dtype, input_zero_point=zx, narrow_range=False), w)
             for w in (wt3, wt1)]
    for y, xx in itertools.product(range(h), range(wd)):
        x = base.copy()
        x[0, y, xx, (y + xx) % cin] = bad
        for (pk, w), stride, padding in [(packs[0], 1, 1), (packs[0], 2, 1), (packs[1], 1, 0), (packs[1], 2, 0)]:
            got = K.conv2d(x, pk, stride=stride, padding=padding, out_dtype="int32")
            want = oracle_conv(x, w, None, None, stride=(stride, stride), padding=(padding, padding),
                               dilation=(1, 1), groups=1, zx=zx, out_dtype="int32")
            np.testing.assert_array_equal(got, want)


def test_7bit_conv_reference_twin_agrees(isa):
    rng = np.random.default_rng(53)
    for a_dtype, zx in SEVEN_BIT_CONV_ZPS:
        x = seven_bit_x(rng, (1, 10, 9, 8), a_dtype)
        wt = rng.integers(-127, 128, (21, 8, 3, 3)).astype(np.int8)
        b = rng.integers(-100, 100, 21).astype(np.int32)
        m = rng.uniform(1e-3, 1e-2, 21).astype(np.float32)
        pk = K.pack_conv2d_weights(wt, b, m, input_dtype=a_dtype, input_zero_point=zx)
        got = K.conv2d(x, pk, stride=1, padding=1, out_dtype="int8", out_zero_point=-4)
        want = reference.conv2d(x, wt, b, m, stride=1, padding=1, input_zero_point=zx, out_dtype="int8",
                                out_zero_point=-4)
        np.testing.assert_array_equal(got, want)
