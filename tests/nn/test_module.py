"""Module tree, state_dict, modes, hooks, fused modules (with gradient checks) and fusion helpers."""
import numpy as np
import pytest

import megq
import megq.functional as F
import megq.module as M
from oracles.gradcheck import assert_grads_close


class Net(M.Module):
    def __init__(self):
        super().__init__()
        self.conv = M.Conv2d(2, 4, 3, padding=1)
        self.bn = M.BatchNorm2d(4)
        self.blocks = [M.ReLU(), M.Identity()]
        self.head = M.Sequential(M.Flatten(), M.Dropout(0.5), M.Linear(4 * 9, 3))

    def forward(self, x):
        x = self.bn(self.conv(x))
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def test_tree_and_names():
    net = Net()
    names = [n for n, _ in net.named_modules()]
    assert names == ["", "conv", "bn", "blocks.0", "blocks.1", "head", "head.0", "head.1", "head.2"]
    assert [n for n, _ in net.named_parameters()] == [
        "conv.weight", "conv.bias", "bn.weight", "bn.bias", "head.2.weight", "head.2.bias"]
    assert [n for n, _ in net.named_buffers()] == ["bn.running_mean", "bn.running_var"]
    assert [n for n, _ in net.named_children()] == ["conv", "bn", "blocks.0", "blocks.1", "head"]
    assert list(net.state_dict()) == ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean",
                                      "bn.running_var", "head.2.weight", "head.2.bias"]


def test_state_dict_round_trip_and_errors():
    a, b = Net(), Net()
    a.bn.running_mean.set_value(np.arange(4, dtype=np.float32))
    b.load_state_dict(a.state_dict())
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(va, vb, err_msg=k)
    sd = a.state_dict()
    sd["extra.weight"] = np.zeros(1)
    del sd["conv.bias"]
    with pytest.raises(KeyError, match="conv.bias") as ei:
        b.load_state_dict(sd)
    assert "extra.weight" in str(ei.value)
    missing, unexpected = b.load_state_dict(sd, strict=False)
    assert missing == ["conv.bias"] and unexpected == ["extra.weight"]
    bad = a.state_dict()
    bad["conv.weight"] = np.zeros((4, 2, 5, 5))
    with pytest.raises(ValueError, match="conv.weight"):
        b.load_state_dict(bad)


def test_train_eval_bn_and_dropout():
    megq.random.seed(0)
    net = Net()
    x = megq.Tensor(np.random.default_rng(0).standard_normal((8, 2, 3, 3)) * 3 + 1)
    net.train()
    assert all(m.training for m in net.modules())
    y1, y2 = net(x).numpy(), net(x).numpy()
    assert not np.allclose(y1, y2)  # dropout differs between calls
    assert np.abs(net.bn.running_mean.numpy()).sum() > 0
    net.eval()
    assert not any(m.training for m in net.modules())
    rm = net.bn.running_mean.numpy().copy()
    e1, e2 = net(x).numpy(), net(x).numpy()
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_array_equal(net.bn.running_mean.numpy(), rm)  # eval does not update stats
    conv = net.conv(x).numpy()
    b = (1, -1, 1, 1)
    ref = ((conv - rm.reshape(b)) / np.sqrt(net.bn.running_var.numpy().reshape(b) + 1e-5))
    np.testing.assert_allclose(net.bn(net.conv(x)).numpy(), ref, rtol=1e-4, atol=1e-5)


def test_apply_hooks_disable_quantize():
    net = Net()
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[0] == "Net" and "Linear" in seen
    calls = []
    h = net.conv.register_forward_hook(lambda m, inp, out: calls.append(out.shape))
    pre = net.conv.register_forward_pre_hook(lambda m, inp: (inp[0] * 0.0,))
    out = net.eval()(megq.Tensor(np.ones((1, 2, 3, 3))))
    assert calls == [(1, 4, 3, 3)]
    h.remove()
    pre.remove()
    net(megq.Tensor(np.ones((1, 2, 3, 3))))
    assert len(calls) == 1 and out.shape == (1, 3)
    net.head.disable_quantize()
    assert net.head.quantize_disabled and net.head[2].quantize_disabled and not net.conv.quantize_disabled


def test_conv_linear_argument_errors():
    conv = M.Conv2d(3, 8, 3)
    with pytest.raises(ValueError, match="4-D"):
        conv(megq.Tensor(np.zeros((3, 5, 5))))
    with pytest.raises(ValueError, match="in_channels"):
        conv(megq.Tensor(np.zeros((1, 4, 5, 5))))
    with pytest.raises(TypeError, match="in_channels"):
        M.Conv2d(3.0, 8, 3)
    with pytest.raises(ValueError, match="out_channels"):
        M.Conv2d(3, 0, 3)
    with pytest.raises(TypeError, match="kernel_size"):
        M.Conv2d(3, 8, "3")
    with pytest.raises(ValueError, match="groups"):
        M.Conv2d(3, 8, 3, groups=2)
    with pytest.raises(ValueError, match="in_features"):
        M.Linear(4, 2)(megq.Tensor(np.zeros((2, 5))))
    with pytest.raises(ValueError, match="num_features"):
        M.BatchNorm2d(3)(megq.Tensor(np.zeros((2, 4, 2, 2))))
    with pytest.raises(ValueError, match="method"):
        M.Elemwise("frobnicate")
    with pytest.raises(ValueError, match="drop_prob"):
        M.Dropout(1.5)


def test_elemwise_concat_stubs():
    a, b, c = (np.random.default_rng(i).standard_normal((2, 3)) for i in range(3))
    ta, tb, tc = megq.Tensor(a), megq.Tensor(b), megq.Tensor(c)
    np.testing.assert_allclose(M.Elemwise("add")(ta, tb).numpy(), a + b)
    np.testing.assert_allclose(M.Elemwise("FUSE_ADD_RELU")(ta, tb).numpy(), np.maximum(a + b, 0))
    np.testing.assert_allclose(M.Elemwise("mul")(ta, tb).numpy(), a * b)
    np.testing.assert_allclose(M.Elemwise("sub")(ta, tb).numpy(), a - b)
    np.testing.assert_allclose(M.Elemwise("fuse_mul_add3")(ta, tb, tc).numpy(), a * b + c)
    assert M.Elemwise("fuse_add_relu").method == "FUSE_ADD_RELU"
    np.testing.assert_allclose(M.Concat()([ta, tb], axis=1).numpy(), np.concatenate([a, b], 1))
    assert M.QuantStub()(ta) is ta and M.DequantStub()(ta) is ta


def _to64(m):
    for t in list(m.parameters()) + list(m.buffers()):
        t.set_value(t.numpy().astype(np.float64))
    return m


def _randomize_bn(bn, rng):
    bn.weight.set_value(rng.uniform(0.5, 1.5, bn.num_features))
    bn.bias.set_value(rng.standard_normal(bn.num_features))
    bn.running_mean.set_value(rng.standard_normal(bn.num_features))
    bn.running_var.set_value(rng.uniform(0.5, 2.0, bn.num_features))


@pytest.mark.parametrize("cls", [M.ConvBn2d, M.ConvBnRelu2d])
@pytest.mark.parametrize("training", [True, False])
def test_conv_bn_fused_grad(cls, training):
    rng = np.random.default_rng(3)
    m = cls(3, 4, 3, stride=1, padding=1, bias=True)
    assert [n for n, _ in m.named_children()] == ["conv", "bn"]
    _randomize_bn(m.bn, rng)
    _to64(m).train(training)
    w, b = m.conv.weight.numpy(), m.conv.bias.numpy()
    gamma, beta = m.bn.weight.numpy(), m.bn.bias.numpy()
    x = rng.standard_normal((2, 3, 4, 4))
    # independent numpy reference of the forward
    y = F.conv2d(megq.Tensor(x), megq.Tensor(w), megq.Tensor(b), padding=1).numpy()
    if training:
        mu, var = y.mean(axis=(0, 2, 3), keepdims=True), y.var(axis=(0, 2, 3), keepdims=True)
    else:
        mu, var = m.bn.running_mean.numpy().reshape(1, -1, 1, 1), m.bn.running_var.numpy().reshape(1, -1, 1, 1)
    ref = (y - mu) / np.sqrt(var + 1e-5) * gamma.reshape(1, -1, 1, 1) + beta.reshape(1, -1, 1, 1)
    if cls is M.ConvBnRelu2d:
        ref = np.maximum(ref, 0)
    np.testing.assert_allclose(m(megq.Tensor(x)).numpy(), ref, rtol=1e-9, atol=1e-9)

    def fn(x_, w_, g_):
        m.conv.weight, m.bn.weight = w_, g_
        return m(x_)

    assert_grads_close(fn, [x, w, gamma])


@pytest.mark.parametrize("cls", [M.ConvRelu2d, M.LinearRelu])
def test_conv_linear_relu_grad(cls):
    rng = np.random.default_rng(4)
    m = _to64(cls(3, 4, 3, padding=1) if cls is M.ConvRelu2d else cls(3, 4))
    x = rng.standard_normal((2, 3, 4, 4) if cls is M.ConvRelu2d else (5, 3))

    def fn(x_, w_):
        m.weight = w_
        return m(x_)

    assert_grads_close(fn, [x, m.weight.numpy()])


@pytest.mark.parametrize("cls", [M.LinearBn1d, M.LinearBnRelu1d])
def test_linear_bn_fused_grad(cls):
    rng = np.random.default_rng(5)
    m = cls(3, 4)
    assert [n for n, _ in m.named_children()] == ["linear", "bn"]
    _randomize_bn(m.bn, rng)
    _to64(m)
    x = rng.standard_normal((6, 3))
    y = x @ m.linear.weight.numpy().T + m.linear.bias.numpy()
    ref = (y - y.mean(0)) / np.sqrt(y.var(0) + 1e-5) * m.bn.weight.numpy() + m.bn.bias.numpy()
    if cls is M.LinearBnRelu1d:
        ref = np.maximum(ref, 0)
    np.testing.assert_allclose(m(megq.Tensor(x)).numpy(), ref, rtol=1e-9, atol=1e-9)

    def fn(x_, w_, g_):
        m.linear.weight, m.bn.weight = w_, g_
        return m(x_)

    assert_grads_close(fn, [x, m.linear.weight.numpy(), m.bn.weight.numpy()])


def test_fuse_helpers():
    rng = np.random.default_rng(6)
    conv, bn, relu = M.Conv2d(3, 4, 3, padding=1), M.BatchNorm2d(4), M.ReLU()
    _randomize_bn(bn, rng)
    fused = M.fuse_conv_bn_relu(conv, bn, relu)
    assert type(fused) is M.ConvBnRelu2d and fused.conv is conv and fused.bn is bn
    x = megq.Tensor(rng.standard_normal((2, 3, 5, 5)).astype(np.float32))
    conv.eval(), bn.eval()
    ref = np.maximum(bn(conv(x)).numpy(), 0)
    folded = M.fuse_conv_bn_relu(conv, bn, relu)
    assert type(folded) is M.ConvRelu2d and folded.weight is not conv.weight
    np.testing.assert_allclose(folded(x).numpy(), ref, rtol=1e-4, atol=1e-5)
    lin, bn1 = M.Linear(3, 4), M.BatchNorm1d(4)
    assert type(M.fuse_linear_bn_relu(lin, bn1)) is M.LinearBn1d
    assert type(M.fuse_linear_bn_relu(lin, None, M.ReLU())) is M.LinearRelu
    with pytest.raises(TypeError, match="bn"):
        M.fuse_conv_bn_relu(conv, M.BatchNorm1d(4))

    class Plain(M.Module):
        def __init__(self):
            super().__init__()
            self.features = M.Sequential(M.Conv2d(1, 2, 3), M.BatchNorm2d(2), M.ReLU())
            self.fc, self.relu = M.Linear(2, 2), M.ReLU()

    p = Plain()
    M.fuse_modules(p, [["features.0", "features.1", "features.2"], ["fc", "relu"]])
    assert type(p.features[0]) is M.ConvBnRelu2d and type(p.features[1]) is M.Identity
    assert type(p.fc) is M.LinearRelu and type(p.relu) is M.Identity
    assert "features.0.bn.running_mean" in p.state_dict()
    with pytest.raises(KeyError, match="nope"):
        M.fuse_modules(p, [["nope"]])
