"""fake_quant_tensor / fake_quant_bias / TQT / LSQ against independent numpy formulas; gradients."""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import megq
from megq.autodiff import GradManager
from megq.quantization import (
    LSQ,
    TQT,
    FakeQuantize,
    LSQParams,
    QuantMode,
    create_qparams,
    fake_quant_bias,
    fake_quant_tensor,
    qint8,
    qint8_narrow,
    quint8,
)
from megq.quantization.dtype import _builtin_quant_dtypes, get_dtype_meta


def rha64(v):
    """Independent round-half-away-from-zero in float64 (exact for float32 inputs)."""
    v = np.asarray(v, np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def oracle(x, s, z, qmin, qmax):
    u = (np.float32(x) / np.float32(s)).astype(np.float32)  # true float32 division
    q = np.clip(rha64(u) + z, qmin, qmax)
    return ((q - z) * np.float64(np.float32(s))).astype(np.float32), (rha64(u) + z >= qmin) & (rha64(u) + z <= qmax)


def grad_of(fn, *arrays, seed=0):
    ts = [megq.Tensor(np.asarray(a, np.float32)) for a in arrays]
    gm = GradManager().attach(ts)
    rng = np.random.default_rng(seed)
    with gm:
        y = fn(*ts)
        r = rng.standard_normal(y.shape).astype(np.float32)
        gm.backward(y, r)
    return y, r, [t.grad.numpy() if t.grad is not None else None for t in ts]


# -- dtypes -------------------------------------------------------------------------------------------------------

def test_builtin_dtypes_ranges_and_singletons():
    d = _builtin_quant_dtypes
    assert (d["qint8"].qmin, d["qint8"].qmax) == (-128, 127)
    assert (d["qint8_narrow"].qmin, d["qint8_narrow"].qmax) == (-127, 127)
    assert (d["quint8"].qmin, d["quint8"].qmax) == (0, 255)
    assert (d["qint4"].qmin, d["qint4"].qmax) == (-8, 7)
    assert (d["quint4"].qmin, d["quint4"].qmax) == (0, 15)
    assert (d["qint32"].qmin, d["qint32"].qmax) == (-2 ** 31, 2 ** 31 - 1)
    assert copy.deepcopy(qint8) is qint8 and copy.copy(qint8_narrow) is qint8_narrow
    assert pickle.loads(pickle.dumps(quint8)) is quint8
    assert QuantMode.SYMMETRIC is QuantMode.SYMMERTIC and QuantMode.ASYMMETRIC is QuantMode.ASYMMERTIC


def test_unknown_dtype_raises():
    with pytest.raises(ValueError, match="unknown quantized dtype"):
        get_dtype_meta("qint7")
    with pytest.raises(ValueError):
        FakeQuantize("int8")
    with pytest.raises(ValueError):
        create_qparams(dtype_meta="uint9")


# -- fake_quant_tensor ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["qint8", "qint8_narrow", "qint4"])
def test_fake_quant_matches_oracle_random(dtype):
    meta = get_dtype_meta(dtype)
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 3, 5, 5)) * 3).astype(np.float32)
    s = np.float32(0.0371)
    y = fake_quant_tensor(megq.Tensor(x), create_qparams(QuantMode.SYMMERTIC, meta, s)).numpy()
    ref, _ = oracle(x, s, 0, meta.qmin, meta.qmax)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, ref)


def test_fake_quant_ties_round_half_away_from_zero_both_signs():
    s = np.float32(0.25)
    k = np.arange(-6, 6, dtype=np.float32)
    x = (k + np.float32(0.5)) * s  # x/s = k + 0.5 exactly
    y = fake_quant_tensor(megq.Tensor(x), create_qparams(QuantMode.SYMMERTIC, qint8, s)).numpy()
    expect = np.where(k + 0.5 > 0, k + 1, k) * s  # away from zero
    np.testing.assert_array_equal(y, expect.astype(np.float32))
    # np.round (half to even) would differ at e.g. 0.5 -> 0 and 2.5 -> 2
    assert y[k == 0][0] == s and y[k == -1][0] == -s


def test_fake_quant_clipping_and_asymmetric_zero_point():
    s, z = np.float32(0.1), 100
    qp = create_qparams(QuantMode.ASYMMERTIC, quint8, s, z)
    x = np.array([-20.0, -10.0, -9.96, 0.0, 0.04, 0.05, 15.49, 15.5, 16.0, 1e9, -np.inf, np.inf], np.float32)
    y = fake_quant_tensor(megq.Tensor(x), qp).numpy()
    ref, _ = oracle(x, s, z, 0, 255)
    np.testing.assert_array_equal(y, ref)
    assert y[0] == np.float32((0 - z) * np.float64(s)).astype(np.float32)  # clamps to qmin
    assert y[-1] == ref[-1] and y[-2] == ref[-2]


def test_fake_quant_nan_stays_nan():
    x = np.array([np.nan, 1.0], np.float32)
    y = fake_quant_tensor(megq.Tensor(x), create_qparams(QuantMode.SYMMERTIC, qint8, 0.1)).numpy()
    assert np.isnan(y[0]) and not np.isnan(y[1])


def test_fake_quant_per_channel_weight_and_activation_axis():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    s = np.array([0.01, 0.02, 0.05], np.float32)
    y = fake_quant_tensor(megq.Tensor(w), create_qparams(QuantMode.SYMMERTIC, qint8_narrow, s)).numpy()
    ref, _ = oracle(w, s.reshape(3, 1, 1, 1), 0, -127, 127)
    np.testing.assert_array_equal(y, ref)
    a = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    y2 = fake_quant_tensor(megq.Tensor(a), create_qparams(QuantMode.SYMMERTIC, qint8, s, axis=1)).numpy()
    ref2, _ = oracle(a, s.reshape(1, 3, 1, 1), 0, -128, 127)
    np.testing.assert_array_equal(y2, ref2)
    lw = rng.standard_normal((3, 7)).astype(np.float32)
    y3 = fake_quant_tensor(megq.Tensor(lw), create_qparams(QuantMode.SYMMERTIC, qint8_narrow, s)).numpy()
    np.testing.assert_array_equal(y3, oracle(lw, s.reshape(3, 1), 0, -127, 127)[0])
    with pytest.raises(ValueError, match="channels"):
        fake_quant_tensor(megq.Tensor(np.zeros((4, 2), np.float32)), create_qparams(QuantMode.SYMMERTIC, qint8, s))


def test_fake_quant_ste_mask_on_rounded_value():
    s = np.float32(1.0)
    # x/s = 127.4 rounds to 127 (inside), 127.5 rounds to 128 (outside), -128.4 -> -128 inside, -128.5 -> -129 outside
    x = np.array([127.4, 127.5, -128.4, -128.5, 0.3, 300.0], np.float32)
    _, _, (g,) = grad_of(lambda t: fake_quant_tensor(t, create_qparams(QuantMode.SYMMERTIC, qint8, s)), x)
    y, r, _ = grad_of(lambda t: fake_quant_tensor(t, create_qparams(QuantMode.SYMMERTIC, qint8, s)), x)
    mask = np.array([1, 0, 1, 0, 1, 0], np.float32)
    np.testing.assert_array_equal(g, r * mask)


def test_fake_quant_narrow_positive_clipping_quirk():
    # activation scale amax/127.5: +amax -> 127.5 -> rounds to 128 -> clamps to 127; -amax -> -128
    amax = np.float32(2.55)
    s = np.float32(amax / np.float32(127.5))
    y = fake_quant_tensor(megq.Tensor(np.array([amax, -amax], np.float32)),
                          create_qparams(QuantMode.SYMMERTIC, qint8, s)).numpy()
    assert y[0] == np.float32(127 * np.float64(s)) and y[1] == np.float32(-128 * np.float64(s))


# -- fake_quant_bias ------------------------------------------------------------------------------------------------

def _tensor_with(qp, shape=(2, 3)):
    t = megq.Tensor(np.ones(shape, np.float32))
    t.qparams = qp
    return t


def test_fake_quant_bias_rules():
    b = megq.Tensor(np.array([0.123456, -1.5, 3.0e-4], np.float32))
    inp = _tensor_with(create_qparams(QuantMode.SYMMERTIC, qint8, 0.02))
    w = _tensor_with(create_qparams(QuantMode.SYMMERTIC, qint8_narrow, 0.003))
    out = fake_quant_bias(b, inp, w)
    sb = np.float32(np.float32(0.02) * np.float32(0.003))
    np.testing.assert_array_equal(out.numpy(), oracle(b.numpy(), sb, 0, -2 ** 31, 2 ** 31 - 1)[0])
    assert out.qparams.dtype_meta.name == "qint32" and out.qparams.scale == sb
    # per-channel weights: per-channel bias scale
    wpc = _tensor_with(create_qparams(QuantMode.SYMMERTIC, qint8_narrow, np.array([0.001, 0.002, 0.004], np.float32)))
    out = fake_quant_bias(b, inp, wpc)
    sbc = (np.float32(0.02) * np.array([0.001, 0.002, 0.004], np.float32)).astype(np.float32)
    np.testing.assert_array_equal(out.numpy(), oracle(b.numpy(), sbc, 0, -2 ** 31, 2 ** 31 - 1)[0])
    # no qparams / no scale / asymmetric int8 / 4-bit are int8-stored -> rules
    assert fake_quant_bias(b, megq.Tensor(np.ones(3, np.float32)), w) is b
    assert fake_quant_bias(None, inp, w) is None
    assert fake_quant_bias(b, _tensor_with(create_qparams(QuantMode.SYMMERTIC, qint8, None)), w) is b
    asym_int8 = _tensor_with(create_qparams(QuantMode.ASYMMERTIC, qint8, 0.02, 3))
    assert fake_quant_bias(b, asym_int8, w) is b
    # megq extension: quint8 (asymmetric) input -> bias still quantized with s_in * s_w
    u8 = _tensor_with(create_qparams(QuantMode.ASYMMERTIC, quint8, 0.02, 128))
    np.testing.assert_array_equal(fake_quant_bias(b, u8, w).numpy(), oracle(b.numpy(), sb, 0, -2 ** 31, 2 ** 31)[0])


# -- TQT -----------------------------------------------------------------------------------------------------------

def test_tqt_forward_backward_formula():
    fq = TQT("qint8")
    fq.scale.set_value(np.array(-3.0, np.float32))  # t = 1/8
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-20, 20, 40), [15.9375, -16.0625, 15.875, 100.0]]).astype(np.float32)
    t = np.float32(0.125)
    xt = megq.Tensor(x)
    gm = GradManager().attach([xt, fq.scale])
    r = rng.standard_normal(x.shape).astype(np.float32)
    with gm:
        y = fq(xt)
        gm.backward(y, r)
    u = (x / t).astype(np.float32)
    rq = np.clip(rha64(u), -128, 127)
    np.testing.assert_array_equal(y.numpy(), (rq * t).astype(np.float32))
    clip = (u < -128.5) | (u > 127.5)
    np.testing.assert_array_equal(xt.grad.numpy(), r * ~clip)
    ds = np.sum(r * np.log(2.0) * t * np.where(clip, rq, rq - u))
    np.testing.assert_allclose(fq.scale.grad.numpy(), ds, rtol=1e-5)
    qp = fq.get_qparams()
    assert qp.mode == QuantMode.SYMMERTIC and qp.scale == t and qp.dtype_meta is qint8


def test_tqt_scale_gradient_matches_finite_difference_in_clip_region():
    # all inputs clipped: y = qmax * 2**s (smooth in s)
    x = np.full(5, 1000.0, np.float32)
    fq = TQT("qint8")
    fq.scale.set_value(np.array(0.5, np.float32))
    gm = GradManager().attach([fq.scale])
    with gm:
        y = fq(megq.Tensor(x)).sum()
        gm.backward(y)
    h = 1e-3

    def f(s):
        fq.scale.set_value(np.array(s, np.float32))
        return float(fq(megq.Tensor(x)).numpy().astype(np.float64).sum())

    num = (f(0.5 + h) - f(0.5 - h)) / (2 * h)
    np.testing.assert_allclose(fq.scale.grad.numpy(), num, rtol=1e-3)


def test_tqt_set_qparams_requires_symmetric():
    fq = TQT("qint8")
    fq.set_qparams(create_qparams(QuantMode.SYMMERTIC, qint8, 0.25))
    assert fq.scale.numpy() == -2.0
    with pytest.raises(ValueError, match="symmetric"):
        fq.set_qparams(create_qparams(QuantMode.ASYMMERTIC, quint8, 0.25, 3))


# -- LSQ -----------------------------------------------------------------------------------------------------------

def test_lsq_forward_backward_formula_and_finite_difference():
    fq = LSQ("qint8")
    fq.set_qparams(LSQParams(QuantMode.SYMMERTIC, qint8, 0.1, None, grad_scale=0.5))
    eps = np.float32(1e-5)
    s = np.float32(np.float32(0.1) - eps) + eps
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(-15, 15, 50), [12.75, -12.85, 12.65]]).astype(np.float32)
    xt = megq.Tensor(x)
    gm = GradManager().attach([xt, fq.step_size])
    r = rng.standard_normal(x.shape).astype(np.float32)
    with gm:
        y = fq(xt)
        gm.backward(y, r)
    v_raw = (x / s).astype(np.float32)
    v = np.clip(v_raw, -128, 127)  # clamp before round
    np.testing.assert_array_equal(y.numpy(), (rha64(v) * s).astype(np.float32))
    inside = (v_raw >= -128) & (v_raw <= 127)
    np.testing.assert_array_equal(xt.grad.numpy(), r * inside)
    term = np.where(v_raw < -128, -128, np.where(v_raw > 127, 127, rha64(v_raw) - v_raw))
    np.testing.assert_allclose(fq.step_size.grad.numpy(), np.sum(r * 0.5 * term), rtol=1e-4)
    qp = fq.get_qparams()
    assert isinstance(qp, LSQParams) and np.isclose(qp.scale, s) and qp.grad_scale == np.float32(0.5)
    # clipped region is smooth in the step: finite differences agree (grad_scale 1)
    fq2 = LSQ("qint8")
    big = megq.Tensor(np.full(4, 1e4, np.float32))
    gm = GradManager().attach([fq2.step_size])
    with gm:
        gm.backward(fq2(big).sum())
    h = 1e-3

    def f(st):
        fq2.step_size.set_value(np.array(st, np.float32))
        return float(fq2(big).numpy().astype(np.float64).sum())

    np.testing.assert_allclose(fq2.step_size.grad.numpy(), (f(1 + h) - f(1 - h)) / (2 * h), rtol=1e-3)


def test_lsq_set_qparams_small_scale_sets_step_zero():
    fq = LSQ("qint8")
    fq.set_qparams(create_qparams(QuantMode.SYMMERTIC, qint8, 1e-6))
    assert fq.step_size.numpy() == 0 and np.isclose(fq.get_qparams().scale, 1e-5)


def test_fakequantize_dtype_identity_and_disable():
    fq = FakeQuantize("qint8_narrow")
    x = megq.Tensor(np.array([0.33], np.float32))
    with pytest.raises(ValueError, match="not the fake-quant dtype"):
        fq(x, create_qparams(QuantMode.SYMMERTIC, qint8, 0.1))
    with pytest.raises(ValueError, match="observer"):
        fq(x, None)
    fq.disable()
    assert fq(x, None) is x
