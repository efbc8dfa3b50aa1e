"""PTQ algorithms: cross-layer equalization keeps the float function (against the untouched model) and balances
the channel ranges; bias correction removes a planted mean error (against a numpy oracle of the layer means);
QFloat == Q bit for bit after every option of calibrate."""
from __future__ import annotations

import numpy as np
import pytest

import megq
import megq.module as M
import megq.quantization as Q
from megq.autodiff import no_grad
from megq.quantization import ptq

from .test_exact import assert_qfloat_equals_q


def _randomize_bn(net, rng):
    for m in net.modules():
        if isinstance(m, M.BatchNorm2d):
            c = m.running_mean.shape[0]
            m.running_mean.set_value((rng.standard_normal(c) * 0.2).astype(np.float32))
            m.running_var.set_value(rng.uniform(0.5, 2.0, c).astype(np.float32))
            m.weight.set_value(rng.uniform(0.5, 1.5, c).astype(np.float32))
            m.bias.set_value((rng.standard_normal(c) * 0.3).astype(np.float32))


def separable_net(rng):
    """conv+BN (linear) -> depthwise conv+BN+ReLU -> pointwise conv (+ReLU module) -> conv: three exact pairs, with
    output channel ranges spread over two orders of magnitude."""
    net = M.Sequential(M.QuantStub(), M.ConvBn2d(3, 8, 3, padding=1), M.ConvBnRelu2d(8, 8, 3, padding=1, groups=8),
                       M.Conv2d(8, 6, 1), M.ReLU(), M.Conv2d(6, 4, 3, padding=1), M.Flatten(),
                       M.Linear(4 * 6 * 6, 5), M.DequantStub())
    _randomize_bn(net, rng)
    w = net[1].conv.weight.numpy()
    net[1].conv.weight.set_value((w * np.logspace(-1.5, 0.5, 8).reshape(-1, 1, 1, 1)).astype(np.float32))
    return net.eval()


def run(net, x):
    with no_grad():
        return net(megq.Tensor(x)).numpy()


def test_equalize_keeps_the_float_function_and_balances_ranges():
    rng = np.random.default_rng(0)
    net = separable_net(rng)
    x = rng.standard_normal((4, 3, 6, 6)).astype(np.float32)
    y0 = run(net, x)
    pairs = ptq.equalize(net, x)
    assert pairs == [("1", "2"), ("2", "3"), ("3", "5")]
    y1 = run(net, x)
    np.testing.assert_allclose(y1, y0, rtol=0, atol=1e-5 * np.abs(y0).max())
    # the pair (1, 2): output ranges of layer 1 equal (after the sweeps, nearly) the input ranges of depthwise 2
    w1 = net[1].folded_weight_and_bias()[0] if hasattr(net[1], "folded_weight_and_bias") else None
    bn = net[1].bn
    f1 = net[1].conv.weight.numpy() * (bn.weight.numpy() / np.sqrt(bn.running_var.numpy() + bn.eps)).reshape(-1, 1, 1,
                                                                                                            1)
    r1 = np.abs(f1).reshape(8, -1).max(1)
    bn2 = net[2].bn
    f2 = net[2].conv.weight.numpy() * (bn2.weight.numpy() / np.sqrt(bn2.running_var.numpy() + bn2.eps)).reshape(
        -1, 1, 1, 1)
    r2 = np.abs(f2).reshape(8, -1).max(1)
    assert w1 is None
    assert r1.max() / r1.min() < 10  # was ~100 (logspace over 2 decades) before
    assert np.abs(np.log(r1 / r2)).max() < np.log(4)


def test_equalize_leaves_relu6_and_branches_alone():
    rng = np.random.default_rng(1)

    class Branch(M.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = M.QuantStub(), M.DequantStub()
            self.a = M.ConvBnRelu62d(3, 4, 3, padding=1)   # ReLU6: not positively homogeneous
            self.b = M.Conv2d(4, 4, 1)
            self.c = M.Conv2d(4, 4, 1)

        def forward(self, x):
            y = self.b(self.a(self.quant(x)))
            return self.dequant(self.c(y) + y)  # the functional add reads b's output too: b -> c is not exact

    net = Branch()
    _randomize_bn(net, rng)
    net.b.weight.set_value((net.b.weight.numpy() * np.array([100, 1, 0.01, 1], np.float32).reshape(-1, 1, 1, 1)))
    net.eval()
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    y0 = run(net, x)
    assert ptq.equalize(net, x) == []
    np.testing.assert_array_equal(run(net, x), y0)


def layer_mean_oracle(x, w, b, stride=1, padding=0, groups=1):
    """Per-channel mean of a conv output, by a direct numpy convolution (float64)."""
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, oc, oh, ow))
    for o in range(oc):
        g = o // (oc // groups)
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg, i * stride:i * stride + kh, j * stride:j * stride + kw]
                out[:, o, i, j] = (patch * w[o]).sum(axis=(1, 2, 3))
    return out.mean(axis=(0, 2, 3)) + b


@pytest.mark.parametrize("stride,padding,groups", [(1, 1, 1), (2, 1, 1), (1, 0, 2), (2, 1, 4)])
def test_window_mean_equals_a_direct_convolution(stride, padding, groups):
    from megq.quantization.ptq._common import WindowMean

    rng = np.random.default_rng(stride * 10 + padding + groups)
    x = rng.standard_normal((3, 4, 7, 6))
    w = rng.standard_normal((8, 4 // groups, 3, 3))
    b = rng.standard_normal(8)
    wm = WindowMean(((stride, stride), (padding, padding), (1, 1), groups), (3, 3))
    wm.add(x[:2])
    wm.add(x[2:])
    np.testing.assert_allclose(wm.output_mean(w, b), layer_mean_oracle(x, w, b, stride, padding, groups), rtol=1e-12,
                               atol=1e-12)


def test_bias_correction_removes_a_planted_mean_error():
    """Weights planted just below the rounding midpoint of their grid (all rounded down): the quantized conv has a
    known mean error; bias correction moves the quantized output mean onto the float one."""
    rng = np.random.default_rng(3)
    net = M.Sequential(M.QuantStub(), M.Conv2d(4, 6, 3, padding=1), M.DequantStub())
    s_w = 0.01
    w = (rng.integers(-100, 100, (6, 4, 3, 3)) + 0.45) * s_w  # rounds to the lower level: error -0.45 LSB each
    w[:, 0, 0, 0] = 127 * s_w  # fixes the per-tensor scale to s_w
    net[1].weight.set_value(w.astype(np.float32))
    net[1].bias.set_value(np.zeros(6, np.float32))
    net.eval()
    x = (rng.uniform(0.5, 1.5, (8, 4, 6, 6))).astype(np.float32)  # positive inputs: the errors do not cancel
    qat = Q.quantize_qat(net, inplace=False, qconfig=Q.calibration_qconfig)
    Q.calibrate(qat, [x], progress=False)
    err_before = (run(qat, x) - run(net, x)).mean(axis=(0, 2, 3))
    assert np.abs(err_before).min() > 0.05  # the planted error is there (many output LSBs)
    wq = np.clip(np.round(w / s_w), -127, 127) * s_w
    with no_grad():
        xq = np.asarray(qat[0](megq.Tensor(x)).dequantize(), np.float64)  # the QuantStub's int8 input
    # absorb_upstream: the float network's mean (float input) minus the quantized layer's mean
    import copy
    other = copy.deepcopy(qat)
    deltas = ptq.bias_correct(other, [x], absorb_upstream=True)
    expect = layer_mean_oracle(x.astype(np.float64), w, 0, padding=1) - layer_mean_oracle(xq, wq, 0, padding=1)
    np.testing.assert_allclose(deltas["1"], expect, rtol=1e-4, atol=1e-6)
    # default: the float weights on the same quantized input minus the int8 weights on it
    deltas = ptq.bias_correct(qat, [x])
    expect = layer_mean_oracle(xq, w, 0, padding=1) - layer_mean_oracle(xq, wq, 0, padding=1)
    np.testing.assert_allclose(deltas["1"], expect, rtol=1e-4, atol=1e-6)
    err_after = (run(qat, x) - run(net, x)).mean(axis=(0, 2, 3))
    out_scale = float(qat[1].get_activation_qparams().scale)
    assert np.abs(err_after).max() < 0.25 * out_scale < np.abs(err_before).min()
    assert_qfloat_equals_q(qat, megq.Tensor(x))


@pytest.mark.parametrize("preset", ["calibration_qconfig", "calibration_qconfig_per_channel",
                                    "ema_fakequant_qconfig_per_channel_quint8"])
@pytest.mark.parametrize("options", [{"equalize": True}, {"bias_correction": True},
                                     {"equalize": True, "bias_correction": True}, {"range_search": True},
                                     {"weight_rounding": True},
                                     {"range_search": True, "weight_rounding": True, "bias_correction": True},
                                     {"equalize_activations": True, "weight_rounding": True}])
def test_qfloat_equals_q_after_every_option(preset, options):
    rng = np.random.default_rng(4)
    net = separable_net(rng)
    batches = [rng.standard_normal((4, 3, 6, 6)).astype(np.float32) for _ in range(3)]
    y_float = run(net, batches[0])
    qat = Q.quantize_qat(net, inplace=False, qconfig=getattr(Q, preset))
    Q.calibrate(qat, batches, progress=False, **options)
    assert_qfloat_equals_q(qat, megq.Tensor(batches[0]))
    # the float model the QAT model was copied from is untouched
    np.testing.assert_array_equal(run(net, batches[0]), y_float)


def test_bias_correction_and_equalize_arguments():
    rng = np.random.default_rng(5)
    net = separable_net(rng)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    qat = Q.quantize_qat(net, inplace=False, qconfig=Q.calibration_qconfig)
    with pytest.raises(ValueError, match="has no scale yet"):
        ptq.bias_correct(qat, [x])
    with pytest.raises(ValueError, match="no QAT conv/linear layer"):
        ptq.bias_correct(net, [x])
    with pytest.raises(TypeError, match="batches must be an iterable"):
        ptq.bias_correct(qat, x)
    with pytest.raises(ValueError, match="batches is empty"):
        ptq.bias_correct(qat, [])
    with pytest.raises(ValueError, match="num_batches"):
        ptq.bias_correct(qat, [x], num_batches=0)
    with pytest.raises(ValueError, match="iterations"):
        ptq.equalize(net, x, iterations=0)
    with pytest.raises(TypeError, match="example"):
        ptq.equalize(net, "x")
    with pytest.raises(TypeError, match="bias_correction must be a bool or a dict"):
        Q.calibrate(qat, [x], progress=False, bias_correction="yes")
    assert {"equalize", "bias_correction"} <= set(Q.PTQ_OPTIONS)
