"""Data-aware weight rounding (GPTQ's solver) and the sequential activation range search, against small numpy
references written here: the OBQ recursion with explicit inverse updates, im2col Gram matrices, a brute-force
range search on raw samples; the mean-of-per-sample min/max observer; QFloat == Q after the new options."""
from __future__ import annotations

import copy
from functools import partial

import numpy as np
import pytest

import megq
import megq.module as M
import megq.quantization as Q
from megq.autodiff import no_grad
from megq.quantization import ptq
from megq.quantization.observer import calculate_qparams
from megq.quantization.ptq.range_search import best_range
from megq.quantization.ptq.weight_rounding import layer_hessian, obq_round
from megq.quantization.utils import QuantMode

from .test_exact import assert_qfloat_equals_q
from .test_ptq import separable_net


def run(net, x):
    with no_grad():
        return net(megq.Tensor(x)).numpy()


# -- the rounding solver ---------------------------------------------------------------------------------------

def obq_reference(w, h, s, qmin, qmax, damp):
    """Optimal Brain Quantization's greedy recursion in its original form (Frantar & Alistarh, 2022), columns in
    decreasing diag(H) order: round column i, spread its error over the remaining columns with the current inverse
    Hessian, then remove i from the inverse (Schur complement). Row by row, no Cholesky."""
    h = np.array(h, np.float64)
    k = h.shape[0]
    h[np.diag_indices(k)] += damp * np.mean(np.diag(h))
    order = list(np.argsort(-np.diag(h), kind="stable"))
    out = np.zeros_like(w)
    for r in range(w.shape[0]):
        wr = np.array(w[r], np.float64)
        hinv = np.linalg.inv(h)
        for i in order:
            q = np.clip(np.sign(wr[i] / s[r]) * np.floor(np.abs(wr[i] / s[r]) + 0.5), qmin, qmax)
            out[r, i] = q
            err = (wr[i] - q * s[r]) / hinv[i, i]
            wr -= err * hinv[:, i]
            hinv = hinv - np.outer(hinv[:, i], hinv[i, :]) / hinv[i, i]
    return out


def test_obq_round_equals_the_obq_recursion():
    rng = np.random.default_rng(0)
    k, r = 12, 5
    x = rng.standard_normal((k, 200)) + 0.8 * rng.standard_normal((1, 200))  # correlated inputs
    h = x @ x.T
    w = rng.standard_normal((r, k)) * 0.3
    s = np.abs(w).max(1) / 127
    got = obq_round(w, h, s, -127, 127, damp=0.01)
    np.testing.assert_array_equal(got, obq_reference(w, h, s, -127, 127, 0.01))
    # the objective it minimises: better than nearest rounding with correlated inputs
    near = np.clip(np.sign(w / s[:, None]) * np.floor(np.abs(w / s[:, None]) + 0.5), -127, 127)

    def err(q):
        e = w - s[:, None] * q
        return np.einsum("ri,ij,rj->", e, h, e)
    assert err(got) < 0.8 * err(near)


def test_obq_round_depthwise_is_per_row_and_diagonal_h_is_nearest():
    rng = np.random.default_rng(1)
    r, k = 4, 9
    hs = []
    for _ in range(r):
        x = rng.standard_normal((k, 50)) + rng.standard_normal((1, 50))
        hs.append(x @ x.T)
    hs = np.stack(hs)
    w = rng.standard_normal((r, k))
    s = np.float64(np.abs(w).max() / 127)  # one scale (per tensor)
    got = obq_round(w, hs, s, -127, 127)
    for i in range(r):
        np.testing.assert_array_equal(got[i], obq_reference(w[i:i + 1], hs[i], [s], -127, 127, 0.01)[0])
    # a diagonal H (uncorrelated inputs): nothing to compensate, nearest rounding (ties away from zero), clamped
    w2 = np.array([[0.5, -1.5, 2.49, 300.0]]) * 0.01
    got = obq_round(w2, np.diag([1.0, 2.0, 3.0, 4.0]), 0.01, -127, 127)
    np.testing.assert_array_equal(got, [[1, -2, 2, 127]])


def patches_reference(x, kh, kw, stride, padding, groups):
    """im2col by explicit loops over output positions: rows (channel, i, j) of each group's receptive field."""
    n, c, hh, ww = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = (hh + 2 * padding - kh) // stride + 1
    ow = (ww + 2 * padding - kw) // stride + 1
    cols = []
    for b in range(n):
        for p in range(oh):
            for q in range(ow):
                cols.append(xp[b, :, p * stride:p * stride + kh, q * stride:q * stride + kw].reshape(c, kh * kw))
    return np.stack(cols, axis=-1)  # (C, kh*kw, P)


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1)])
def test_layer_hessian_equals_im2col_gram(stride, padding):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 7, 6))
    geo = ((stride, stride), (padding, padding), (1, 1), 1)
    h, p = layer_hessian(x, geo, (3, 3))
    cols = patches_reference(x, 3, 3, stride, padding, 1)
    full = cols.reshape(4 * 9, -1)
    assert p == full.shape[1]
    np.testing.assert_allclose(h, full @ full.T, rtol=1e-5, atol=1e-4)
    hd, p = layer_hessian(x, ((stride, stride), (padding, padding), (1, 1), 4), (3, 3))  # depthwise
    np.testing.assert_allclose(hd, np.einsum("cip,cjp->cij", cols, cols), rtol=1e-5, atol=1e-4)
    hl, p = layer_hessian(x[:, :, 0, 0], None, (1, 1))  # linear
    np.testing.assert_allclose(hl, x[:, :, 0, 0].T @ x[:, :, 0, 0], rtol=1e-5, atol=1e-5)
    assert p == 3


def planted_rounding_net(rng):
    """A 1x1 conv on strongly correlated inputs with every weight 0.45 LSB above a level: nearest rounding makes a
    large output error that compensation between input channels removes."""
    net = M.Sequential(M.QuantStub(), M.Conv2d(8, 6, 1), M.DequantStub())
    s_w = 0.01
    w = (rng.integers(-100, 100, (6, 8, 1, 1)) + 0.45) * s_w
    w[:, 0] = 127 * s_w  # per-channel scale fixed at s_w
    net[1].weight.set_value(w.astype(np.float32))
    net[1].bias.set_value(np.zeros(6, np.float32))
    return net.eval()


def test_round_weights_removes_a_planted_rounding_error_exactly_stored():
    rng = np.random.default_rng(3)
    net = planted_rounding_net(rng)
    base = rng.uniform(0.5, 1.5, (16, 1, 5, 5))
    x = (base + 0.1 * rng.standard_normal((16, 8, 5, 5))).astype(np.float32)  # channels nearly collinear
    qat = Q.quantize_qat(net, inplace=False, qconfig=Q.calibration_qconfig_per_channel)
    Q.calibrate(qat, [x], progress=False)
    ref = copy.deepcopy(qat)
    gains = ptq.round_weights(qat, [x])
    assert set(gains) == {"1"} and gains["1"] < 0.2
    # stored exactly: the Q model's int8 weights are the solver's integers on the layer's quantized inputs
    with no_grad():
        xq = np.asarray(qat[0](megq.Tensor(x)).dequantize(), np.float64)
    w = ref[1].folded_weight_and_bias()[0].reshape(6, 8).astype(np.float64)
    s = np.asarray(ref[1].get_weight_qparams().scale, np.float64)
    xs = xq.transpose(1, 0, 2, 3).reshape(8, -1)
    expect = obq_reference(w, xs @ xs.T, s, -127, 127, 0.01)
    qm = assert_qfloat_equals_q(qat, megq.Tensor(x))
    np.testing.assert_array_equal(qm[1].layer.weight_q.reshape(6, 8), expect)
    # and the layer's float output error on the calibration data drops
    err = lambda m: np.abs(run(m, x) - run(net, x)).mean()  # noqa: E731
    assert err(qat) < 0.5 * err(ref)
    # the scales did not move
    np.testing.assert_array_equal(qat[1].get_weight_qparams().scale, ref[1].get_weight_qparams().scale)


# -- the range search ------------------------------------------------------------------------------------------

def brute_force_range(z, mode, meta, ratios):
    """Candidate with the least mean per-image relative error, fake-quantizing the raw samples."""
    errs = []
    mn, mx = min(z.min(), 0.0), max(z.max(), 0.0)
    for r in ratios:
        lo, hi = (-r * max(-mn, mx), r * max(-mn, mx)) if mode == QuantMode.SYMMERTIC else (r * mn, r * mx)
        qp = Q.observer.calculate_qparams(np.float32(lo), np.float32(hi), mode, meta, 1e-5)
        y = Q.fake_quant_tensor(megq.Tensor(z.astype(np.float32)), qp).numpy().astype(np.float64)
        e = ((y - z) ** 2).reshape(len(z), -1).sum(1) / (z ** 2).reshape(len(z), -1).sum(1)
        errs.append(e.mean())
    return np.array(errs)


@pytest.mark.parametrize("mode,dtype", [(QuantMode.SYMMERTIC, "qint8"), (QuantMode.ASYMMERTIC, "quint8")])
def test_best_range_picks_the_error_optimal_clip(mode, dtype):
    rng = np.random.default_rng(4)
    meta = Q.get_dtype_meta(dtype, "test")
    z = rng.standard_t(2.5, (6, 20000))  # heavy tails: the optimum clips well inside the extremes
    z[z > 0] *= 1.3
    lo, hi, errs = best_range(z, mode, meta, candidates=48, min_ratio=0.05)
    ratios = np.geomspace(0.05, 1.0, 48)
    ref = brute_force_range(z, mode, meta, ratios)
    best = int(np.argmin(errs))
    assert ref[best] <= 1.01 * ref.min()  # the histogram's choice is optimal on the raw samples too
    np.testing.assert_allclose(errs, ref, rtol=0.05)
    assert ratios[best] < 0.9  # clipped, as such tails want
    # data filling its range uniformly: no clipping
    u = rng.uniform(-1.0, 1.0, (4, 5000)) if mode == QuantMode.SYMMERTIC else rng.uniform(0.0, 1.0, (4, 5000))
    lo, hi, _ = best_range(u, mode, meta)
    assert hi == pytest.approx(u.max(), rel=1e-6)


def test_best_range_counts_exact_zeros_as_exact():
    rng = np.random.default_rng(5)
    meta = Q.get_dtype_meta("quint8", "test")
    z = np.maximum(rng.standard_normal((3, 4000)), 0.0)  # ReLU output: half exact zeros
    _, _, errs = best_range(z, QuantMode.ASYMMERTIC, meta, candidates=16)
    ref = brute_force_range(z, QuantMode.ASYMMERTIC, meta, np.geomspace(0.1, 1.0, 16))
    np.testing.assert_allclose(errs, ref, rtol=0.05)


def test_search_ranges_sets_observers_and_keeps_qfloat_equal_q():
    rng = np.random.default_rng(6)
    net = separable_net(rng)
    batches = [rng.standard_normal((4, 3, 6, 6)).astype(np.float32) for _ in range(2)]
    qat = Q.quantize_qat(net, inplace=False, qconfig=Q.ema_fakequant_qconfig_per_channel_quint8)
    Q.calibrate(qat, batches, progress=False)
    chosen = ptq.search_ranges(qat, batches)
    assert set(chosen) == {"0", "1", "2", "3", "5", "7"}
    # an EMA (min/max) observer keeps its kind and holds the chosen range; its qparams are the range's
    ob = qat[1].act_observer
    assert type(ob).__name__ == "ExponentialMovingAverageObserver"
    assert (float(ob.min_val.numpy()), float(ob.max_val.numpy())) == pytest.approx(chosen["1"], rel=1e-6)
    assert_qfloat_equals_q(qat, megq.Tensor(batches[0]))
    # a histogram observer becomes a PassiveObserver with the chosen range's qparams
    qat2 = Q.quantize_qat(net, inplace=False, qconfig=Q.calibration_qconfig)
    Q.calibrate(qat2, batches, progress=False, range_search=True)
    assert isinstance(qat2[2].act_observer, Q.PassiveObserver)
    assert_qfloat_equals_q(qat2, megq.Tensor(batches[1]))


# -- observer, options -----------------------------------------------------------------------------------------

def test_mean_min_max_observer_is_the_mean_of_per_sample_extremes():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((10, 3, 4, 4)).astype(np.float32) * rng.uniform(0.5, 3, (10, 1, 1, 1)).astype(np.float32)
    mn = x.reshape(10, -1).min(1).astype(np.float64).mean()
    mx = x.reshape(10, -1).max(1).astype(np.float64).mean()
    for split in ([10], [3, 7], [1] * 10):  # the batching does not matter
        ob = Q.MeanMinMaxObserver(mode=QuantMode.ASYMMERTIC, dtype="quint8")
        start = 0
        for n in split:
            ob(megq.Tensor(x[start:start + n]))
            start += n
        assert float(ob.min_val.numpy()) == pytest.approx(mn, rel=1e-6)
        assert float(ob.max_val.numpy()) == pytest.approx(mx, rel=1e-6)
        expect = Q.observer.calculate_qparams(np.float32(mn), np.float32(mx), QuantMode.ASYMMERTIC,
                                              Q.get_dtype_meta("quint8", "t"), 1e-5)
        assert ob.get_qparams() == expect
    ob.reset()
    assert float(ob.sums.numpy()[2]) == 0
    with pytest.raises(ValueError, match="NaN or Inf"):
        ob(megq.Tensor(np.full((2, 3), np.nan, np.float32)))


def test_after_options_run_in_registered_order(monkeypatch):
    rng = np.random.default_rng(8)
    net = separable_net(rng)
    x = rng.standard_normal((4, 3, 6, 6)).astype(np.float32)
    calls = []
    for name in ("bias_correction", "weight_rounding", "range_search"):
        phase, _ = Q.PTQ_OPTIONS[name]
        monkeypatch.setitem(Q.PTQ_OPTIONS, name, (phase, lambda m, b, v, name=name: calls.append(name)))
    qat = Q.quantize_qat(net, inplace=False, qconfig=Q.calibration_qconfig)
    Q.calibrate(qat, [x], progress=False, bias_correction=True, weight_rounding=True, range_search=True)
    assert calls == ["range_search", "weight_rounding", "bias_correction"]


def test_new_option_arguments():
    rng = np.random.default_rng(9)
    net = separable_net(rng)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    qat = Q.quantize_qat(net, inplace=False, qconfig=Q.calibration_qconfig)
    with pytest.raises(ValueError, match="has no weight scale yet"):
        ptq.round_weights(qat, [x])
    with pytest.raises(ValueError, match="has no activation scale yet"):
        ptq.search_ranges(qat, [x])
    Q.calibrate(qat, [x], progress=False)
    with pytest.raises(ValueError, match="damp"):
        ptq.round_weights(qat, [x], damp=0)
    with pytest.raises(TypeError, match="act_order"):
        ptq.round_weights(qat, [x], act_order="yes")
    with pytest.raises(ValueError, match="candidates"):
        ptq.search_ranges(qat, [x], candidates=1)
    with pytest.raises(ValueError, match="min_ratio"):
        ptq.search_ranges(qat, [x], min_ratio=1.5)
    with pytest.raises(TypeError, match="weight_rounding must be a bool or a dict"):
        Q.calibrate(qat, [x], progress=False, weight_rounding="yes")
    with pytest.raises(ValueError, match="no QAT conv/linear layer"):
        ptq.round_weights(net, [x])
    assert {"range_search", "weight_rounding"} <= set(Q.PTQ_OPTIONS)


# -- activation range equalization -------------------------------------------------------------------------------

def relu6_depthwise_net(rng):
    """conv+BN+ReLU6 whose output channels span two orders of magnitude -> depthwise conv+BN whose BN scales them
    back to one size (so the small channels' rounding noise is amplified, as in MobileNetV2) -> 1x1 conv."""
    net = M.Sequential(M.QuantStub(), M.ConvBnRelu62d(3, 6, 3, padding=1), M.ConvBn2d(6, 6, 3, padding=1, groups=6),
                       M.ConvBn2d(6, 4, 1), M.DequantStub())
    for m in net.modules():
        if isinstance(m, M.BatchNorm2d):
            c = m.running_mean.shape[0]
            m.running_mean.set_value(np.zeros(c, np.float32))
            m.running_var.set_value(np.ones(c, np.float32))
            m.bias.set_value(np.zeros(c, np.float32))
    spread = np.logspace(-2, 0, 6).astype(np.float32)
    net[1].bn.weight.set_value(spread)  # channel ranges 100x apart, all below 6
    net[2].bn.weight.set_value((1.0 / spread).astype(np.float32))
    return net.eval()


def test_equalize_activations_spreads_channels_and_keeps_the_function_on_calibration_data():
    rng = np.random.default_rng(10)
    net = relu6_depthwise_net(rng)
    x = (rng.standard_normal((8, 3, 6, 6)) * 0.5).astype(np.float32)
    y0 = run(net, x)
    with no_grad():
        before = net[1](net[0](megq.Tensor(x))).numpy().max(axis=(0, 2, 3))
    done = ptq.equalize_activations(net, [x], max_factor=1000.0)
    assert list(done) == [("1", "2")]  # the pair into the 1x1 conv (not depthwise) is left alone by default
    c = done[("1", "2")]
    np.testing.assert_allclose(c, before.max() / before, rtol=1e-6)  # the oracle: each channel to the widest
    with no_grad():
        after = net[1](net[0](megq.Tensor(x))).numpy().max(axis=(0, 2, 3))
    np.testing.assert_allclose(after, np.full(6, before.max()), rtol=1e-5)
    np.testing.assert_allclose(run(net, x), y0, rtol=0, atol=1e-5 * np.abs(y0).max())
    # the factor is capped
    net2 = relu6_depthwise_net(rng)
    done = ptq.equalize_activations(net2, [x], max_factor=4.0, depthwise_only=False)
    assert set(done) == {("1", "2")} and done[("1", "2")].max() == 4.0  # ConvBn2d 2 has no ReLU: not a pair here


def test_equalize_activations_lowers_activation_error_and_keeps_qfloat_equal_q():
    rng = np.random.default_rng(11)
    net = relu6_depthwise_net(rng)
    x = (rng.standard_normal((8, 3, 6, 6)) * 0.5).astype(np.float32)
    y = run(net, x)
    qc = Q.QConfig(partial(Q.PerChannelMinMaxObserver, dtype="qint8_narrow"),
                   partial(Q.MinMaxObserver, mode=QuantMode.ASYMMERTIC, dtype="quint8"), None, None)
    errs = []
    for on in (False, True):
        qat = Q.quantize_qat(net, inplace=False, qconfig=qc)
        Q.calibrate(qat, [x], progress=False, equalize_activations=on)
        errs.append(np.abs(run(qat, x) - y).mean())
        assert_qfloat_equals_q(qat, megq.Tensor(x))
    assert errs[1] < 0.5 * errs[0]
    with pytest.raises(ValueError, match="max_factor"):
        ptq.equalize_activations(net, [x], max_factor=0.5)
    with pytest.raises(TypeError, match="depthwise_only"):
        ptq.equalize_activations(net, [x], depthwise_only=1)


def linear_pair_net():
    """conv+BN without activation whose signed output channels span two orders of magnitude (shifted by the BN's
    beta so that minima and maxima differ per channel) -> 1x1 conv whose input weights scale them back (a
    projection feeding an expansion, as MobileNetV2's first block does)."""
    net = M.Sequential(M.QuantStub(), M.ConvBn2d(3, 6, 3, padding=1), M.ConvBn2d(6, 4, 1), M.DequantStub())
    for m in net.modules():
        if isinstance(m, M.BatchNorm2d):
            c = m.running_mean.shape[0]
            m.running_mean.set_value(np.zeros(c, np.float32))
            m.running_var.set_value(np.ones(c, np.float32))
    spread = np.logspace(-2, 0, 6).astype(np.float32)
    net[1].bn.weight.set_value(spread)
    net[1].bn.bias.set_value((spread * np.array([0.5, -0.5, 0.2, -0.2, 0.0, 0.3], np.float32)).astype(np.float32))
    net[2].bn.bias.set_value(np.zeros(4, np.float32))
    w = net[2].conv.weight.numpy()  # the small channels matter as much as the large ones downstream
    net[2].conv.weight.set_value((w / spread.reshape(1, 6, 1, 1)).astype(np.float32))
    return net.eval()


def test_equalize_activations_linear_pairs_fit_signed_channels_to_the_widest_range():
    rng = np.random.default_rng(12)
    net = linear_pair_net()
    x = (rng.standard_normal((8, 3, 6, 6)) * 0.5).astype(np.float32)
    y0 = run(net, x)
    with no_grad():
        z = net[1](net[0](megq.Tensor(x))).numpy().astype(np.float64)
    assert ptq.equalize_activations(copy.deepcopy(net), [x], max_factor=1000.0) == {}  # off by default
    done = ptq.equalize_activations(net, [x], max_factor=1000.0, linear=True)
    assert list(done) == [("1", "2")]
    # the oracle: per channel, the largest factor that keeps [min, max] inside the tensor's [min, max]
    hi, lo = z.max(axis=(0, 2, 3)), z.min(axis=(0, 2, 3))
    want = np.minimum(np.where(hi > 0, hi.max() / hi, np.inf), np.where(lo < 0, lo.min() / lo, np.inf))
    np.testing.assert_allclose(done[("1", "2")], want, rtol=1e-6)
    assert want.max() > 10  # the small channels really are spread
    with no_grad():
        z2 = net[1](net[0](megq.Tensor(x))).numpy()
    assert z2.max() <= hi.max() * (1 + 1e-5) and z2.min() >= lo.min() * (1 + 1e-5)
    np.testing.assert_allclose(run(net, x), y0, rtol=0, atol=1e-5 * np.abs(y0).max())
    with pytest.raises(TypeError, match="linear"):
        ptq.equalize_activations(net, [x], linear=1)


def test_equalize_activations_linear_lowers_activation_error_and_keeps_qfloat_equal_q():
    rng = np.random.default_rng(13)
    net = linear_pair_net()
    x = (rng.standard_normal((8, 3, 6, 6)) * 0.5).astype(np.float32)
    y = run(net, x)
    qc = Q.QConfig(partial(Q.PerChannelMinMaxObserver, dtype="qint8_narrow"),
                   partial(Q.MinMaxObserver, mode=QuantMode.ASYMMERTIC, dtype="quint8"), None, None)
    errs = []
    for opt in (False, {"linear": True}):
        qat = Q.quantize_qat(net, inplace=False, qconfig=qc)
        Q.calibrate(qat, [x], progress=False, equalize_activations=opt)
        errs.append(np.abs(run(qat, x) - y).mean())
        assert_qfloat_equals_q(qat, megq.Tensor(x))
    assert errs[1] < 0.5 * errs[0]


# -- global min/max at the ends, mean min/max presets -------------------------------------------------------------

def test_ends_minmax_global_ranges_at_the_ends_mean_ranges_inside():
    from .test_compare import small_net

    rng = np.random.default_rng(14)
    net = small_net(rng)
    batches = [rng.standard_normal((4, 3, 6, 6)).astype(np.float32) for _ in range(3)]
    x = np.concatenate(batches)
    with no_grad():  # float oracle values: the input, layer 1's output, the logits (the last weighted layer)
        z1 = net[1](megq.Tensor(x)).numpy().reshape(len(x), -1).astype(np.float64)
        logits = run(net, x).reshape(len(x), -1).astype(np.float64)
    per_image = x.reshape(len(x), -1).astype(np.float64)
    for on in (False, True):
        qat = Q.quantize_qat(net, inplace=False, qconfig=Q.calibration_qconfig_meanminmax_per_channel)
        Q.calibrate(qat, batches, progress=False, ends_minmax=on)
        # ranges -> qparams by the observers' one rule (calculate_qparams, tested on its own): the ranges are
        # what is checked here, global at the ends with the option, the mean of the per-image min/max otherwise
        ends = [(qat[0], per_image, on), (qat[6], logits, on), (qat[1], z1, False)]
        for m, v, glob in ends:
            lo, hi = (v.min(), v.max()) if glob else (v.min(1).mean(), v.max(1).mean())
            want = calculate_qparams(np.float32(min(lo, 0)), np.float32(max(hi, 0)), QuantMode.ASYMMERTIC,
                                     Q.get_dtype_meta("quint8"), 1e-5)
            got = m.get_activation_qparams()
            assert float(got.scale) == pytest.approx(float(want.scale), rel=1e-6)
            assert int(got.zero_point) == int(want.zero_point)
        assert_qfloat_equals_q(qat, megq.Tensor(batches[0]))
    assert ptq.ends_minmax(Q.quantize_qat(net, inplace=False, qconfig=Q.calibration_qconfig_meanminmax)) == ["0", "6"]
    with pytest.raises(TypeError, match="ends_minmax"):
        Q.calibrate(Q.quantize_qat(net, inplace=False, qconfig=Q.calibration_qconfig_meanminmax), batches,
                    progress=False, ends_minmax=1)
    with pytest.raises(ValueError, match="no QAT module"):
        ptq.ends_minmax(net)
