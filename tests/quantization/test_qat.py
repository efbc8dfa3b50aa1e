"""QAT modules and model-level functions: quantize_qat conversion and skipping rules, every preset, ConvBn/LinearBn
folding vs independent numpy, bias fake quant, qparams flow, integer-eval dispatch, reset_qconfig, EasyQuant."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest

import megq
import megq.functional as F
import megq.module as M
import megq.module.qat as QM
import megq.quantization as Q
from megq.autodiff import GradManager
from megq.quantization import integer_eval as IE

f32 = np.float32


def T(a):
    return megq.Tensor(np.asarray(a, np.float32))


def rha64(v):
    v = np.asarray(v, np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def fq_np(x, s, qmin, qmax, axis_shape=None):
    s = np.asarray(s, np.float32)
    if axis_shape is not None:
        s = s.reshape(axis_shape)
    u = (np.asarray(x, np.float32) / s).astype(np.float32)
    return (np.clip(rha64(u), qmin, qmax) * s.astype(np.float64)).astype(np.float32)


def conv_np(x, w, b=None, stride=1, pad=0):
    x = np.asarray(x, np.float64)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    out = np.einsum("nchwij,ocij->nohw", win, np.asarray(w, np.float64))
    if b is not None:
        out = out + np.asarray(b, np.float64).reshape(1, -1, 1, 1)
    return out


def assert_fake_quant_matches(y, ref, s, qmin, qmax, tol_steps=2e-3):
    """``y`` (megq, float32 arithmetic) is the fake quantization of ``ref`` (float64 numpy) with scale ``s``, except
    where ``ref / s`` lies within ``tol_steps`` of a rounding boundary (k + 0.5): there the float32 computation may
    round to the neighbour. ``tol_steps`` bounds float32's error on these small layers (sums of <= 27 products of
    O(1) values, relative error ~1e-6, over steps of ~1e-2 of the range, plus BN's division by the batch std),
    with margin; a real bug moves elements far from boundaries too, and by more than one step."""
    s = np.float32(s)
    y = np.asarray(y)
    q_got = np.rint(y.astype(np.float64) / np.float64(s))
    np.testing.assert_array_equal(y, (q_got * np.float64(s)).astype(np.float32))  # on the grid
    u = np.asarray(ref, np.float64) / np.float64(s)
    q_ref = np.clip(rha64(u), qmin, qmax)
    off = q_got != q_ref
    boundary = np.abs(np.abs(u - np.trunc(u)) - 0.5) <= tol_steps
    assert np.all(np.abs(q_got - q_ref)[off] == 1), "elements more than one step off"
    assert np.all(boundary[off]), f"{off.sum()} elements off, {(off & ~boundary).sum()} not at a rounding boundary"
    assert off.mean() <= 4 * tol_steps + 1e-9  # the fraction within tol of a boundary is ~2 * tol_steps


class AllTypes(M.Module):
    def __init__(self):
        super().__init__()
        self.quant = M.QuantStub()
        self.conv = M.Conv2d(3, 4, 3, padding=1)
        self.conv_relu = M.ConvRelu2d(4, 4, 3, padding=1)
        self.conv_bn = M.ConvBn2d(4, 4, 3, padding=1)
        self.conv_bn_relu = M.ConvBnRelu2d(4, 4, 1, bias=False)
        self.add = M.Elemwise("add")
        self.cat = M.Concat()
        self.pool = M.MaxPool2d(2)
        self.flat = M.Flatten()
        self.fc = M.Linear(128, 16)
        self.fc_relu = M.LinearRelu(16, 16)
        self.fc_bn = M.LinearBn1d(16, 8)
        self.fc_bn_relu = M.LinearBnRelu1d(8, 8)
        self.dequant = M.DequantStub()
        self.head = [M.Linear(8, 4)]

    def forward(self, x):
        x = self.quant(x)
        a = self.conv(x)
        b = self.conv_relu(a)
        c = self.conv_bn_relu(self.conv_bn(b))
        x = self.add(a, c)
        x = self.cat([x, b], axis=1)
        x = self.flat(self.pool(x))
        x = self.fc_bn_relu(self.fc_bn(self.fc_relu(self.fc(x))))
        return self.head[0](self.dequant(x))


def _x(n=4, seed=0):
    return T(np.random.default_rng(seed).standard_normal((n, 3, 8, 8)))


def test_default_mapping_is_name_based():
    import sys

    names = set(sys.modules["megq.quantization.quantize"]._get_quantable_module_names())
    assert names == {"Conv2d", "ConvRelu2d", "ConvRelu62d", "ConvBn2d", "ConvBnRelu2d", "ConvBnRelu62d", "Linear",
                     "LinearRelu", "LinearRelu6", "LinearBn1d", "LinearBnRelu1d", "Elemwise", "Concat", "QuantStub",
                     "DequantStub"}
    for n in names:
        assert issubclass(getattr(QM, n), getattr(M, n)) and issubclass(getattr(QM, n), QM.QATModule)


def test_quantize_qat_converts_every_type_and_shares_parameters():
    net = AllTypes()
    w = net.conv.weight
    bn = net.conv_bn.bn
    net.head[0].disable_quantize()
    out = Q.quantize_qat(net)
    assert out is net
    for name in ("quant", "conv", "conv_relu", "conv_bn", "conv_bn_relu", "add", "cat", "fc", "fc_relu", "fc_bn",
                 "fc_bn_relu", "dequant"):
        m = getattr(net, name)
        assert type(m) is getattr(QM, type(m).__name__), name
    assert net.conv.weight is w and net.conv_bn.bn is bn
    assert type(net.conv_bn.conv) is M.Conv2d and type(net.conv_bn.bn) is M.BatchNorm2d  # children stay float
    assert type(net.head[0]) is M.Linear  # quantize_disabled
    assert type(net.pool) is M.MaxPool2d
    assert net.add.method == "ADD" and net.add.weight_observer is None and net.cat.weight_observer is None
    assert net.dequant.act_observer is None and net.quant.weight_observer is None
    assert net.conv.act_observer.name == "conv.act_observer"
    gm = GradManager().attach(net.parameters())
    with gm:
        y = net(_x())
        gm.backward(y.sum())
    assert y.shape == (4, 4) and net.conv.weight.grad is not None and net.conv_bn.bn.weight.grad is not None
    # second call: no-op (MegEngine raises KeyError)
    conv_before = net.conv
    Q.quantize_qat(net)
    assert net.conv is conv_before


def test_quantize_qat_inplace_false_and_root_and_errors():
    net = M.Sequential(M.QuantStub(), M.Conv2d(3, 2, 1))
    q = Q.quantize_qat(net, inplace=False)
    assert type(net[1]) is M.Conv2d and type(q[1]) is QM.Conv2d
    assert q[1].weight is not net[1].weight
    np.testing.assert_array_equal(q[1].weight.numpy(), net[1].weight.numpy())
    root = Q.quantize_qat(M.Linear(3, 2))
    assert type(root) is QM.Linear and root.act_observer is not None
    with pytest.raises(TypeError, match="QConfig"):
        Q.quantize_qat(M.Linear(3, 2), qconfig=Q.ema_fakequant_qconfig._asdict())
    with pytest.raises(TypeError, match="inplace"):
        Q.quantize_qat(M.Linear(3, 2), inplace=1)

    class MyConv(M.Conv2d):
        pass

    with pytest.raises(TypeError, match="no QAT mapping"):
        Q.quantize_qat(M.Sequential(MyConv(1, 1, 1)))
    ok = Q.quantize_qat(M.Sequential(MyConv(1, 1, 1)), mapping={MyConv: QM.Conv2d})
    assert type(ok[0]) is QM.Conv2d
    bn_no_stats = M.ConvBn2d(2, 2, 1, track_running_stats=False)
    with pytest.raises(ValueError, match="running statistics"):
        Q.quantize_qat(M.Sequential(bn_no_stats))


def test_qconfig_rejects_instances_and_mismatched_dtypes():
    with pytest.raises(ValueError, match="instances"):
        Q.QConfig(Q.MinMaxObserver(), None, None, None)
    with pytest.raises(ValueError, match="instances"):
        Q.QConfig(None, None, Q.FakeQuantize("qint8"), None)
    bad = Q.QConfig(partial(Q.MinMaxObserver, dtype="qint8"), None, partial(Q.FakeQuantize, dtype="qint8_narrow"),
                    None)
    with pytest.raises(ValueError, match="dtype"):
        Q.quantize_qat(M.Sequential(M.Conv2d(1, 1, 1)), qconfig=bad)


@pytest.mark.parametrize("name", sorted(Q.PRESETS))
def test_every_preset_constructs_and_runs(name):
    qc = Q.PRESETS[name]
    net = AllTypes()
    if name in ("passive_qconfig", "easyquant_qconfig"):
        Q.quantize_qat(net)
        net(_x())
        Q.reset_qconfig(net, qc)
    else:
        Q.quantize_qat(net, qconfig=qc)
    gm = GradManager().attach(net.parameters())
    with gm:
        y = net(_x())
        gm.backward(y.sum())
    assert np.all(np.isfinite(y.numpy()))
    net.eval()
    Q.enable_observer(net)
    net(_x(seed=1))
    for m in net.modules():
        if isinstance(m, QM.QATModule) and m.with_act:
            qp = m.get_activation_qparams()
            assert qp is not None and np.all(qp.scale > 0)
        if isinstance(m, QM.QATModule) and m.with_weight:
            qp = m.get_weight_qparams()
            assert qp is not None and np.all(qp.scale > 0)
            if "per_channel" in name:
                assert qp.scale.shape == (m._weight_channels(),)
    assert all(ob.enabled for ob in net.modules() if isinstance(ob, Q.Observer) and not isinstance(
        ob, Q.PassiveObserver))


def test_preset_contents_match_megengine():
    e = Q.ema_fakequant_qconfig
    wo, ao, wf, af = e.weight_observer(), e.act_observer(), e.weight_fake_quant(), e.act_fake_quant()
    assert type(wo) is Q.MinMaxObserver and wo.dtype is Q.qint8_narrow
    assert type(ao) is Q.ExponentialMovingAverageObserver and ao.dtype is Q.qint8 and ao.momentum.numpy() == f32(0.9)
    assert wf.dtype is Q.qint8_narrow and af.dtype is Q.qint8 and wf.enabled
    c = Q.calibration_qconfig
    h = c.act_observer()
    assert c.weight_fake_quant is None and c.act_fake_quant is None and h.bins == 2048 and h.upsample_rate == 128
    assert Q.easyquant_qconfig is Q.passive_qconfig
    assert Q.tqt_qconfig.weight_observer is None and Q.ema_lowbit_fakequant_qconfig.weight_observer().dtype is Q.qint4
    u = Q.ema_fakequant_qconfig_quint8.act_observer()
    assert u.mode == Q.QuantMode.ASYMMERTIC and u.dtype is Q.quint8


def _convbn_float(bias=True, relu=True):
    rng = np.random.default_rng(7)
    m = (M.ConvBnRelu2d if relu else M.ConvBn2d)(3, 4, 3, padding=1, bias=bias)
    m.conv.weight.set_value(rng.standard_normal((4, 3, 3, 3)).astype(f32) * 0.3)
    if bias:
        m.conv.bias.set_value(rng.standard_normal(4).astype(f32) * 0.1)
    m.bn.weight.set_value(rng.uniform(0.5, 1.5, 4).astype(f32))
    m.bn.bias.set_value(rng.standard_normal(4).astype(f32) * 0.1)
    m.bn.running_mean.set_value(rng.standard_normal(4).astype(f32) * 0.2)
    m.bn.running_var.set_value(rng.uniform(0.5, 2.0, 4).astype(f32))
    return m


def test_convbn_qat_training_forward_matches_numpy():
    fm = _convbn_float()
    W, b = fm.conv.weight.numpy().copy(), fm.conv.bias.numpy().copy()
    g, beta = fm.bn.weight.numpy().copy(), fm.bn.bias.numpy().copy()
    rm, rv = fm.bn.running_mean.numpy().copy(), fm.bn.running_var.numpy().copy()
    q = Q.quantize_qat(M.Sequential(fm))[0]
    x = np.random.default_rng(8).standard_normal((2, 3, 6, 6)).astype(f32)
    gm = GradManager().attach(q.parameters())
    with gm:
        y = q(T(x))
        gm.backward(y.sum())
    # independent numpy; the folded weight in MegEngine's float32 order (gamma * istd), so that its fake
    # quantization is exactly megq's
    k = g * (f32(1) / np.sqrt(rv + f32(1e-5)))
    wf = W * k.reshape(-1, 1, 1, 1)
    sw = f32(np.abs(wf).max()) / f32(127)
    wq = fq_np(wf, sw, -127, 127)
    k = k.astype(np.float64)
    z = conv_np(x, wq, pad=1) / k.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1)
    mean, var = z.mean(axis=(0, 2, 3)), z.var(axis=(0, 2, 3))
    o = (z - mean.reshape(1, -1, 1, 1)) / np.sqrt(var.reshape(1, -1, 1, 1) + 1e-5) * g.reshape(1, -1, 1, 1) \
        + beta.reshape(1, -1, 1, 1)
    o = np.maximum(o, 0)
    sa = o.max() / 127.5
    assert q.weight_observer.get_qparams().scale == sw
    sa_megq = q.act_observer.get_qparams().scale
    np.testing.assert_allclose(sa_megq, sa, rtol=1e-5)  # float32 max / 127.5 of float32 outputs
    assert_fake_quant_matches(y.numpy(), o, sa_megq, -128, 127)
    n = z.size / 4
    np.testing.assert_allclose(q.bn.running_mean.numpy(), 0.9 * rm + 0.1 * mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(q.bn.running_var.numpy(), 0.9 * rv + 0.1 * var * n / (n - 1), rtol=1e-4)
    for p in (q.conv.weight, q.conv.bias, q.bn.weight, q.bn.bias):
        assert p.grad is not None and np.all(np.isfinite(p.grad.numpy()))
    assert y.qparams.scale == q.act_observer.get_qparams().scale


def test_convbn_qat_eval_folds_with_running_stats():
    fm = _convbn_float(relu=False)
    q = Q.quantize_qat(M.Sequential(fm))[0]
    x = np.random.default_rng(9).standard_normal((2, 3, 6, 6)).astype(f32)
    q(T(x))  # one training step to set observers
    q.eval()
    rm, rv = q.bn.running_mean.numpy(), q.bn.running_var.numpy()
    g, beta, W, b = q.bn.weight.numpy(), q.bn.bias.numpy(), q.conv.weight.numpy(), q.conv.bias.numpy()
    istd = (f32(1) / np.sqrt(rv + f32(1e-5))).astype(f32)
    wf_ref = W * (g * istd).reshape(-1, 1, 1, 1)
    bf_ref = beta + g * (b - rm) * istd
    wf, bf = q.folded_weight_and_bias()
    assert wf.dtype == np.float32 and bf.dtype == np.float32
    np.testing.assert_array_equal(wf, wf_ref)
    np.testing.assert_array_equal(bf, bf_ref)
    before = (rm.copy(), rv.copy())
    y = q(T(x))
    np.testing.assert_array_equal(q.bn.running_mean.numpy(), before[0])  # BN not run in eval
    sw = q.get_weight_qparams().scale
    sa = q.get_activation_qparams().scale
    conv = F.conv2d(T(x), T(fq_np(wf, sw, -127, 127)), T(bf), 1, 1).numpy()  # raw input: bias not fake-quantized
    np.testing.assert_array_equal(y.numpy(), fq_np(conv, sa, -128, 127))


def test_linearbn_qat_training_and_eval():
    rng = np.random.default_rng(10)
    fm = M.LinearBnRelu1d(5, 3)
    fm.bn.running_var.set_value(rng.uniform(0.5, 2, 3).astype(f32))
    fm.bn.weight.set_value(rng.uniform(0.5, 1.5, 3).astype(f32))
    W, b, g = fm.linear.weight.numpy().copy(), fm.linear.bias.numpy().copy(), fm.bn.weight.numpy().copy()
    rv = fm.bn.running_var.numpy().copy()
    q = Q.quantize_qat(M.Sequential(fm))[0]
    x = rng.standard_normal((8, 5)).astype(f32)
    y = q(T(x))
    k = g * (f32(1) / np.sqrt(rv + f32(1e-5)))  # MegEngine's float32 fold: megq's weight fake quant exactly
    wf = W * k.reshape(-1, 1)
    sw = f32(np.abs(wf).max()) / f32(127)
    assert q.get_weight_qparams().scale == sw
    wq = fq_np(wf, sw, -127, 127)
    k = k.astype(np.float64)
    z = x.astype(np.float64) @ wq.T.astype(np.float64) / k + b
    o = np.maximum((z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5) * g + fm.bn.bias.numpy(), 0)
    sa = q.get_activation_qparams().scale
    np.testing.assert_allclose(sa, o.max() / 127.5, rtol=1e-5)
    assert_fake_quant_matches(y.numpy(), o, sa, -128, 127)
    q.eval()
    wf_e, bf_e = q.folded_weight_and_bias()
    ye = q(T(x))
    ref = F.linear(T(x), T(fq_np(wf_e, q.get_weight_qparams().scale, -127, 127)), T(bf_e)).numpy()
    np.testing.assert_array_equal(ye.numpy(), fq_np(np.maximum(ref, 0), q.get_activation_qparams().scale, -128, 127))


def test_bias_fake_quant_uses_input_qparams_and_per_channel():
    net = Q.quantize_qat(M.Sequential(M.QuantStub(), M.Conv2d(3, 4, 3)), qconfig=Q.ema_fakequant_qconfig_per_channel)
    net[1].bias.set_value(np.array([0.1234567, -0.05, 0.3, 1e-4], f32))
    x = np.random.default_rng(11).standard_normal((2, 3, 5, 5)).astype(f32)
    y = net(T(x))
    s_in = net[0].get_activation_qparams().scale
    s_w = net[1].get_weight_qparams().scale
    assert s_w.shape == (4,)
    xq = fq_np(x, s_in, -128, 127)
    W = net[1].weight.numpy()
    wq = fq_np(W, s_w, -127, 127, (4, 1, 1, 1))
    sb = (s_in * s_w).astype(f32)
    bq = fq_np(net[1].bias.numpy(), sb, -2 ** 31, 2 ** 31 - 1)
    assert not np.array_equal(bq, net[1].bias.numpy())
    conv = F.conv2d(T(xq), T(wq), T(bq)).numpy()
    np.testing.assert_array_equal(y.numpy(), fq_np(conv, net[1].get_activation_qparams().scale, -128, 127))
    # fake quant disabled -> bias untouched (both fake quants must be enabled)
    Q.disable_fake_quant(net)
    y2 = net(T(x))
    np.testing.assert_allclose(y2.numpy(), F.conv2d(T(x), net[1].weight, net[1].bias).numpy(), rtol=1e-6, atol=1e-6)


def test_qparams_flow_and_passthrough():
    net = Q.quantize_qat(M.Sequential(M.QuantStub(), M.ConvRelu2d(3, 4, 3), M.MaxPool2d(2), M.ReLU(), M.Flatten(),
                                      M.Linear(16, 2), M.DequantStub()))
    x = T(np.random.default_rng(12).standard_normal((2, 3, 6, 6)))
    seen = {}
    net[5].register_forward_pre_hook(lambda m, inp: seen.update(fc_in=inp[0].qparams))
    y = net(x)
    assert x.qparams is None  # QuantStub does not mutate its input
    assert seen["fc_in"] == net[1].get_activation_qparams()  # through maxpool, relu, flatten
    assert y.qparams == net[5].get_activation_qparams()
    cat = Q.quantize_qat(M.Concat())
    out = cat([T(np.ones((1, 2))), T(np.zeros((1, 2)))], axis=1)
    assert out.shape == (1, 4) and out.qparams.scale == f32(1 / f32(127.5))
    add = Q.quantize_qat(M.Elemwise("fuse_add_relu"))
    o = add(T([1.0, -3.0]), T([1.0, 1.0]))
    np.testing.assert_array_equal(o.numpy(), fq_np([2.0, 0.0], f32(2 / f32(127.5)), -128, 127))


def test_enable_disable_switches_and_train_eval():
    net = Q.quantize_qat(AllTypes())
    Q.disable_observer(net)
    assert not any(o.enabled for o in net.modules() if isinstance(o, Q.Observer))
    Q.enable_observer(net)
    net.eval()
    assert not any(o.enabled for o in net.modules() if isinstance(o, Q.Observer))
    net.train()
    assert all(o.enabled for o in net.modules() if isinstance(o, Q.Observer))
    Q.disable_fake_quant(net)
    assert not any(f.enabled for f in net.modules() if isinstance(f, Q.FakeQuantize))
    Q.enable_fake_quant(net)
    assert all(f.enabled for f in net.modules() if isinstance(f, Q.FakeQuantize))


def test_integer_eval_dispatch():
    calls = []

    def fn(module, x):
        calls.append(module)
        return x

    class Sub(QM.Conv2d):
        pass

    net = Q.quantize_qat(M.Sequential(M.Conv2d(1, 1, 1)))
    sub = Sub.from_float_module(M.Conv2d(1, 1, 1))
    sub.set_qconfig(Q.ema_fakequant_qconfig)
    hooked = []
    net[0].register_forward_hook(lambda m, i, o: hooked.append(1))
    x = T(np.ones((1, 1, 2, 2)))
    saved = dict(IE.INTEGER_FORWARD)
    try:
        Q.register_integer_forward(QM.Conv2d)(fn)
        net(x)
        assert calls == []  # training
        net.eval()
        Q.enable_observer(net)
        net(x)
        assert calls == []  # observers collecting
        Q.disable_observer(net)
        assert net(x) is x and calls == [net[0]] and hooked == [1, 1, 1]
        with IE.integer_eval(False):
            net(x)
        assert len(calls) == 1 and Q.integer_eval_enabled()
        Q.disable_fake_quant(net)
        net(x)
        assert len(calls) == 1
        sub.eval()
        sub(x)
        assert calls[-1] is sub  # MRO lookup
        prev = Q.set_integer_eval(False)
        assert prev is True and not Q.integer_eval_enabled()
        Q.set_integer_eval(True)
    finally:
        IE.INTEGER_FORWARD.clear()
        IE.INTEGER_FORWARD.update(saved)


def test_reset_qconfig_keeps_qparams_tqt_and_passive():
    net = Q.quantize_qat(M.Sequential(M.QuantStub(), M.ConvBn2d(3, 4, 3)))
    for s in range(3):
        net(_x(seed=s))
    wq, aq = net[1].get_weight_qparams(), net[1].get_activation_qparams()
    Q.reset_qconfig(net, Q.passive_qconfig)
    assert isinstance(net[1].weight_observer, Q.PassiveObserver)
    assert net[1].get_weight_qparams() == wq and net[1].get_activation_qparams() == aq
    Q.reset_qconfig(net, Q.tqt_qconfig)
    np.testing.assert_allclose(net[1].weight_fake_quant.scale.numpy(), np.log2(wq.scale), rtol=1e-6)
    np.testing.assert_allclose(net[1].get_activation_qparams().scale, aq.scale, rtol=1e-6)
    gm = GradManager().attach(net.parameters())
    with gm:
        gm.backward(net(_x()).sum())
    assert net[1].act_fake_quant.scale.grad is not None
    # per-channel qparams survive too
    pc = Q.quantize_qat(M.Sequential(M.Conv2d(3, 4, 3)), qconfig=Q.ema_fakequant_qconfig_per_channel)
    pc(_x())
    w = pc[0].get_weight_qparams()
    Q.reset_qconfig(pc, Q.tqt_qconfig)
    np.testing.assert_allclose(pc[0].get_weight_qparams().scale, w.scale, rtol=1e-6)
    pc(_x())


def test_qat_state_dict_roundtrip_with_per_channel_observers():
    a = Q.quantize_qat(AllTypes(), qconfig=Q.ema_fakequant_qconfig_per_channel)
    a(_x())
    sd = a.state_dict()
    assert "conv.weight_observer.min_val" in sd and sd["conv.weight_observer.min_val"].shape == (4,)
    assert "conv.act_observer.runtime_momentum" in sd
    b = Q.quantize_qat(AllTypes(), qconfig=Q.ema_fakequant_qconfig_per_channel)
    b.load_state_dict(sd)
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(_x(seed=3)).numpy(), b(_x(seed=3)).numpy())


def test_apply_easy_quant():
    net = Q.quantize_qat(M.Sequential(M.QuantStub(), M.ConvRelu2d(3, 4, 3), M.Conv2d(4, 2, 1), M.DequantStub()))
    x = _x()
    net(x)
    net.eval()
    with pytest.raises(ValueError, match="PassiveObserver"):
        Q.apply_easy_quant(net, x)
    Q.reset_qconfig(net, Q.passive_qconfig)
    orig = net[1].weight_observer.orig_scale.copy()
    Q.apply_easy_quant(net, x, 0.9, 1.1, 5)
    s = net[1].weight_observer.scale
    assert s > 0 and 0.9 * orig * 0.999 <= s <= 1.1 * orig * 1.001
    y = net(x)
    assert y.shape == (4, 2, 6, 6)
    assert all(not m._forward_hooks for m in net.modules() if isinstance(m, QM.QATModule))


def test_quint8_activations_zero_point_flow():
    net = Q.quantize_qat(M.Sequential(M.QuantStub(), M.ConvRelu2d(3, 4, 3), M.Conv2d(4, 2, 1)),
                         qconfig=Q.ema_fakequant_qconfig_quint8)
    x = _x()
    y = net(x)
    aq = net[0].get_activation_qparams()
    assert aq.mode == Q.QuantMode.ASYMMERTIC and aq.dtype_meta is Q.quint8 and 0 < aq.zero_point < 255
    rq = net[1].get_activation_qparams()
    assert rq.zero_point == 0  # relu output: range [0, max]
    assert y.qparams.dtype_meta is Q.quint8
