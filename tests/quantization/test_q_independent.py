"""Q model output == an independent numpy computation (tests/oracles/qmodel.py) from the QAT model's float
parameters, BN buffers and qparams, for every quantized layer type, per-tensor and per-channel weights, qint8 and
quint8 activations.

The QFloat == Q tests (test_exact.py) take the integer weights, bias, multipliers and clamp bounds for both sides
from one place, so a mistake there passes them; here nothing comes from megq but the float parameters and the
observers' qparams.
"""
from __future__ import annotations

import numpy as np
import pytest

import megq
import megq.module as M
import megq.quantization as Q
from megq.autodiff import no_grad
from oracles import qmodel as O

PRESETS = ["ema_fakequant_qconfig", "ema_fakequant_qconfig_per_channel", "ema_fakequant_qconfig_quint8",
           "ema_fakequant_qconfig_per_channel_quint8"]


def randomize_bn(bn, rng):
    c = bn.weight.shape[0]
    bn.weight.set_value(rng.uniform(0.5, 1.5, c).astype(np.float32))
    bn.bias.set_value(rng.normal(0, 0.2, c).astype(np.float32))
    bn.running_mean.set_value(rng.normal(0, 0.3, c).astype(np.float32))
    bn.running_var.set_value(rng.uniform(0.5, 2.0, c).astype(np.float32))


def randomize(net, rng):
    for m in net.modules():
        if isinstance(m, (M.BatchNorm1d, M.BatchNorm2d)):
            randomize_bn(m, rng)
        elif isinstance(m, (M.Conv2d, M.Linear)) and m.bias is not None:
            m.bias.set_value(rng.normal(0, 0.3, m.bias.shape).astype(np.float32))
    return net


def calibrate(net, shape, preset, rng, batches=2, ties=True):
    """quantize_qat, observe a few batches in training mode (BN running statistics move too), then eval with fake
    quant on; with ``ties``, move every weighted layer's parameters onto rounding ties (:func:`put_on_ties`);
    returns (qat model, Q model)."""
    net.eval()
    qnet = Q.quantize_qat(net, inplace=False, qconfig=getattr(Q, preset))
    qnet.train()
    Q.disable_fake_quant(qnet)
    with no_grad():
        for _ in range(batches):
            qnet(megq.Tensor(rng.standard_normal(shape).astype(np.float32)))
    Q.enable_fake_quant(qnet)
    qnet.eval()
    if ties:
        weighted = [m for m in qnet.modules() if getattr(m, "weight_observer", None) is not None]
        input_scale = {}  # each weighted layer's input scale, as the Q model will see it
        def seen(mod, inp):  # QFloat eval passes float tensors with .qparams, or integer tensors with .scale
            qp = getattr(inp[0], "qparams", None)
            input_scale[mod] = qp.scale if qp is not None else inp[0].scale

        for m in weighted:
            put_weights_on_ties(m, rng)
        # let the activation observers follow the new weights (eval: BN statistics, hence the folded weights, stay;
        # the weight observers keep their range, which holds the new weights)
        Q.enable_observer(qnet)
        with no_grad():
            for _ in range(20):
                qnet(megq.Tensor(rng.standard_normal(shape).astype(np.float32)))
        Q.disable_observer(qnet)
        hooks = [m.register_forward_pre_hook(seen) for m in weighted]
        with no_grad():
            qnet(megq.Tensor(rng.standard_normal(shape).astype(np.float32)))
        for h in hooks:
            h.remove()
        for m in weighted:  # with the final input scales
            put_bias_on_ties(m, rng, np.float32(input_scale[m]))
    qmodel = Q.quantize(qnet, inplace=False).eval()
    return qnet, qmodel


def near_ties(rng, shape, step, kmax):
    """float32 values within an ulp or two of ``(k + 0.5) * step`` (half of them) or anywhere in the range: where
    a true division and a multiply by the reciprocal, or two float32 operation orders, round differently."""
    step = np.asarray(step, np.float64)
    k = rng.integers(-kmax, kmax, shape) + 0.5
    anywhere = rng.uniform(-kmax, kmax, shape)
    return (np.where(rng.uniform(size=shape) < 0.5, k, anywhere) * step).astype(np.float32)


def _inner(m):
    return m.conv if hasattr(m, "conv") else m.linear if hasattr(m, "linear") else m


def _weight_step(m):
    s_w = np.asarray(m.get_weight_qparams().scale, np.float32)
    return s_w


def put_weights_on_ties(m, rng):
    """Set a calibrated QAT Conv*/Linear* module's weights so that, as folded, they lie on or next to rounding ties
    of the weight step ``s_w``. Weight qparams come from the (now disabled) observer, so they stay."""
    inner = _inner(m)
    W = inner.weight.numpy()
    s_w = _weight_step(m)
    step = s_w.reshape((-1,) + (1,) * (W.ndim - 1)) if s_w.size > 1 else s_w
    target = near_ties(rng, W.shape, step, 100)
    if "Bn" in type(m).__name__:
        bn = m.bn
        factor = bn.weight.numpy() / np.sqrt(bn.running_var.numpy() + np.float32(bn.eps))
        target = (target / factor.reshape((-1,) + (1,) * (W.ndim - 1))).astype(np.float32)
    inner.weight.set_value(target)


def put_bias_on_ties(m, rng, s_x):
    """Set the bias so that, as folded, it lies on or next to rounding ties of its step ``s_x * s_w``."""
    inner = _inner(m)
    cout = inner.weight.shape[0]
    bias_step = (np.float32(s_x) * _weight_step(m)).astype(np.float32)
    bias = near_ties(rng, (cout,), bias_step, 400)
    if "Bn" in type(m).__name__:
        # b_fold = beta + gamma * (b - mean) * istd (MegEngine's order): on even channels mean == b, so the fold
        # is beta exactly; on odd ones beta is chosen so that the fold lands next to the tie.
        bn = m.bn
        b0 = np.zeros(cout, np.float32) if inner.bias is None else inner.bias.numpy()
        mean = bn.running_mean.numpy().copy()
        mean[::2] = b0[::2]
        bn.running_mean.set_value(mean)
        istd = np.float32(1) / np.sqrt(bn.running_var.numpy() + np.float32(bn.eps))
        t = bn.weight.numpy() * (b0 - mean) * istd
        bn.bias.set_value((bias - t).astype(np.float32))
    elif inner.bias is not None:
        inner.bias.set_value(bias)


def tie_input(rng, shape, quant):
    """Float input on or next to the QuantStub's rounding ties (half of it) or anywhere within +-100 steps."""
    return near_ties(rng, shape, act(quant).scale, 100)


def act(m):
    return O.Act.of(m.get_activation_qparams())


def layer(m, x_q, x_act):
    """Oracle of one QAT Conv*/Linear* module: float parameters (BN folded here) and qparams only."""
    name = type(m).__name__
    relu = "Relu" in name
    inner = m.conv if hasattr(m, "conv") else m.linear if hasattr(m, "linear") else m
    W = inner.weight.numpy()
    b = None if inner.bias is None else inner.bias.numpy()
    if "Bn" in name:
        bn = m.bn
        W, b = O.fold_bn(W, b, bn.weight.numpy(), bn.bias.numpy(), bn.running_mean.numpy(), bn.running_var.numpy(),
                         bn.eps)
    conv = None
    if W.ndim == 4:
        conv = dict(stride=inner.stride, padding=inner.padding, dilation=inner.dilation, groups=inner.groups)
    out = act(m)
    return O.weighted(x_q, x_act, W, b, m.get_weight_qparams(), out, relu, conv=conv), out


def run_q(qmodel, x):
    with no_grad():
        return qmodel(megq.Tensor(x)).numpy()


def assert_informative(q, a: O.Act):
    """The comparison means something: many distinct levels, not everything saturated."""
    assert len(np.unique(q)) >= 8, np.unique(q)
    saturated = (q == a.qmax) | ((q == a.qmin) & (a.qmin != a.zero_point))  # a ReLU's zeros sit at qmin
    assert np.mean(saturated) < 0.3


# (in, out, kernel, stride, padding, dilation, groups)
GEOMETRIES = {
    "3x3": (3, 8, 3, 1, 1, 1, 1),
    "stride2_nopad": (4, 6, 3, 2, 0, 1, 1),
    "groups2": (4, 6, 3, 1, 1, 1, 2),
    "depthwise": (6, 6, 3, 1, 1, 1, 6),
    "depthwise_x2_stride2": (4, 8, 3, 2, 1, 1, 4),
    "dilation2": (4, 8, 3, 1, 2, 2, 1),
    "1x1_stride2": (8, 16, 1, 2, 0, 1, 1),
}
CONV_TYPES = ["Conv2d", "ConvRelu2d", "ConvBn2d", "ConvBnRelu2d"]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("kind", CONV_TYPES)
def test_conv_layers(kind, geometry, preset):
    cin, cout, k, s, p, d, g = GEOMETRIES[geometry]
    rng = np.random.default_rng(CONV_TYPES.index(kind) * 100 + list(GEOMETRIES).index(geometry))
    bias = geometry != "3x3"  # one geometry without a conv bias (the BN variants still get a folded one)
    layer_f = getattr(M, kind)(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=bias)
    net = randomize(M.Sequential(M.QuantStub(), layer_f, M.DequantStub()), rng)
    shape = (3, cin, 9, 10)
    qnet, qmodel = calibrate(net, shape, preset, rng)
    x = tie_input(rng, shape, qnet[0])
    a0 = act(qnet[0])
    xq = O.quantize(x, a0)
    yq, a1 = layer(qnet[1], xq, a0)
    assert_informative(yq, a1)
    np.testing.assert_array_equal(run_q(qmodel, x), O.dequantize(yq, a1))


LINEAR_TYPES = ["Linear", "LinearRelu", "LinearBn1d", "LinearBnRelu1d"]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", LINEAR_TYPES)
def test_linear_layers(kind, bias, preset):
    rng = np.random.default_rng(LINEAR_TYPES.index(kind) * 10 + bias)
    net = randomize(M.Sequential(M.QuantStub(), getattr(M, kind)(23, 17, bias=bias), M.DequantStub()), rng)
    shape = (16, 23)
    qnet, qmodel = calibrate(net, shape, preset, rng)
    x = tie_input(rng, (11, 23), qnet[0])
    a0 = act(qnet[0])
    xq = O.quantize(x, a0)
    yq, a1 = layer(qnet[1], xq, a0)
    assert_informative(yq, a1)
    np.testing.assert_array_equal(run_q(qmodel, x), O.dequantize(yq, a1))


def test_quant_dequant_stubs_alone():
    rng = np.random.default_rng(5)
    for preset in PRESETS:
        net = M.Sequential(M.QuantStub(), M.DequantStub())
        qnet, qmodel = calibrate(net, (4, 3, 5, 5), preset, rng)
        x = tie_input(rng, (2, 3, 5, 5), qnet[0])
        x[0, 0, 0, :3] = [1e6, -1e6, 0.0]  # saturation both ways, exact zero
        a0 = act(qnet[0])
        np.testing.assert_array_equal(run_q(qmodel, x), O.dequantize(O.quantize(x, a0), a0))


class Branches(M.Module):
    """Two conv branches joined by Elemwise(method) and Concat."""

    def __init__(self, method):
        super().__init__()
        self.quant = M.QuantStub()
        self.a = M.ConvBnRelu2d(3, 6, 3, padding=1)
        self.b = M.ConvBn2d(3, 6, 1)
        self.op = M.Elemwise(method)
        self.cat = M.Concat()
        self.dequant = M.DequantStub()

    def forward(self, x):
        x = self.quant(x)
        a, b = self.a(x), self.b(x)
        return self.dequant(self.cat([self.op(a, b), b], axis=1))


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("method", ["add", "fuse_add_relu", "mul"])
def test_elemwise_and_concat(method, preset):
    rng = np.random.default_rng(7)
    shape = (3, 3, 7, 6)
    qnet, qmodel = calibrate(randomize(Branches(method), rng), shape, preset, rng)
    x = tie_input(rng, shape, qnet.quant)
    a0 = act(qnet.quant)
    xq = O.quantize(x, a0)
    aq, a_act = layer(qnet.a, xq, a0)
    bq, b_act = layer(qnet.b, xq, a0)
    op_act = act(qnet.op)
    eq = O.elemwise(qnet.op.method, aq, a_act, bq, b_act, op_act)
    assert_informative(eq, op_act)
    out_act = act(qnet.cat)
    yq = O.concat([eq, bq], [op_act, b_act], out_act)
    np.testing.assert_array_equal(run_q(qmodel, x), O.dequantize(yq, out_act))


class Pooled(M.Module):
    def __init__(self, pool):
        super().__init__()
        self.quant = M.QuantStub()
        self.conv = M.ConvBnRelu2d(3, 8, 3, padding=1)
        self.pool = pool
        self.flat = M.Flatten()
        self.fc = M.Linear(8 * 3 * 3 if not isinstance(pool, M.AdaptiveAvgPool2d) else 8, 5)
        self.dequant = M.DequantStub()

    def forward(self, x):
        return self.dequant(self.fc(self.flat(self.pool(self.conv(self.quant(x))))))


POOLS = {
    "max": (lambda: M.MaxPool2d(2), ("max", (2, 2), (2, 2), (0, 0))),
    "max_pad_stride1": (lambda: M.MaxPool2d(3, 2, 1), ("max", (3, 3), (2, 2), (1, 1))),
    "avg": (lambda: M.AvgPool2d(2), ("avg_exclude", (2, 2), (2, 2), (0, 0))),
    "avg_pad": (lambda: M.AvgPool2d(3, 2, 1), ("avg_exclude", (3, 3), (2, 2), (1, 1))),
    "avg_pad_include": (lambda: M.AvgPool2d(3, 2, 1, mode="average"), ("avg_include", (3, 3), (2, 2), (1, 1))),
    "global": (lambda: M.AdaptiveAvgPool2d(1), None),
}


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("pool", list(POOLS))
def test_pooling_flatten_linear(pool, preset):
    """Pooling keeps the grid (and qparams); Flatten is NCHW order even though the Q model stores NHWC."""
    rng = np.random.default_rng(9)
    make, spec = POOLS[pool]
    shape = (4, 3, 6, 6)
    qnet, qmodel = calibrate(randomize(Pooled(make()), rng), shape, preset, rng)
    x = tie_input(rng, shape, qnet.quant)
    a0 = act(qnet.quant)
    cq, c_act = layer(qnet.conv, O.quantize(x, a0), a0)
    pq = O.global_avg_pool(cq, c_act) if spec is None else O.pool(cq, c_act, *spec)
    assert_informative(pq, c_act)
    fq, f_act = layer(qnet.fc, pq.reshape(pq.shape[0], -1), c_act)
    np.testing.assert_array_equal(run_q(qmodel, x), O.dequantize(fq, f_act))


def test_chain_of_layers_per_channel_quint8():
    """Several layers in a row: each layer's input qparams are its producer's output qparams."""
    rng = np.random.default_rng(11)
    net = randomize(M.Sequential(M.QuantStub(), M.ConvBnRelu2d(3, 8, 3, padding=1),
                                 M.ConvBnRelu2d(8, 8, 3, padding=1, groups=8), M.ConvBn2d(8, 12, 1),
                                 M.ConvRelu2d(12, 6, 3, stride=2), M.DequantStub()), rng)
    shape = (2, 3, 11, 11)
    for preset in ("ema_fakequant_qconfig_per_channel_quint8", "ema_fakequant_qconfig"):
        qnet, qmodel = calibrate(net, shape, preset, rng)
        x = tie_input(rng, shape, qnet[0])
        a = act(qnet[0])
        q = O.quantize(x, a)
        for i in range(1, 5):
            q, a = layer(qnet[i], q, a)
        assert_informative(q, a)
        np.testing.assert_array_equal(run_q(qmodel, x), O.dequantize(q, a))


def test_requantization_on_half_a_million_outputs():
    """``float32(acc) * M`` lands within an ulp of a rounding tie only rarely (about |v| * 2^-24 per element), so
    the multiplier's exact float32 form (``(s_x * s_w) / s_y``, not e.g. ``s_x * (s_w / s_y)``) shows on many
    outputs: 8192 x 64, per-channel multipliers, output values spread over the whole range."""
    rng = np.random.default_rng(13)
    net = randomize(M.Sequential(M.QuantStub(), M.Linear(64, 64), M.DequantStub()), rng)
    qnet, qmodel = calibrate(net, (512, 64), "ema_fakequant_qconfig_per_channel", rng)
    x = tie_input(rng, (8192, 64), qnet[0])
    a0 = act(qnet[0])
    yq, a1 = layer(qnet[1], O.quantize(x, a0), a0)
    assert_informative(yq, a1)
    np.testing.assert_array_equal(run_q(qmodel, x), O.dequantize(yq, a1))
