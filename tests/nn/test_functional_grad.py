"""Finite-difference checks of every functional op's backward, and forwards against independent numpy code."""
import numpy as np
import pytest

import megq
import megq.functional as F
from oracles.gradcheck import assert_grads_close

rng = np.random.default_rng(0)


def randn(*shape):
    return rng.standard_normal(shape)


def naive_conv(x, w, b, stride, pad, dil, groups):
    """Direct loops over output channels and kernel taps (independent of megq's im2col)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    wo = (wd + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, o, ho, wo))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for ci in range(cg):
            for i in range(kh):
                for j in range(kw):
                    patch = xp[:, g * cg + ci, i * dil:i * dil + stride * (ho - 1) + 1:stride,
                               j * dil:j * dil + stride * (wo - 1) + 1:stride]
                    out[:, oc] += patch * w[oc, ci, i, j]
        if b is not None:
            out[:, oc] += b[oc]
    return out


CONV_CASES = [
    # (N, C, H, W, O, K, stride, pad, dil, groups)
    (2, 3, 6, 5, 4, 3, 1, 1, 1, 1),
    (2, 3, 7, 7, 4, 3, 2, 1, 1, 1),
    (1, 4, 7, 6, 6, 3, 1, 2, 2, 2),
    (2, 4, 5, 5, 4, 3, 2, 1, 1, 4),   # depthwise
    (2, 3, 5, 5, 2, 1, 1, 0, 1, 1),   # 1x1
    (2, 3, 6, 6, 2, 1, 2, 0, 1, 1),   # 1x1 stride 2 (ResNet downsample)
    (1, 2, 6, 6, 3, 2, 1, 0, 1, 1),   # even kernel, no padding
    (1, 2, 5, 5, 3, 3, 1, 3, 1, 1),   # padding larger than kernel reach
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_forward_and_grad(case):
    n, c, h, w, o, k, s, p, d, g = case
    x, wt, b = randn(n, c, h, w), randn(o, c // g, k, k), randn(o)
    out = F.conv2d(megq.Tensor(x), megq.Tensor(wt), megq.Tensor(b), stride=s, padding=p, dilation=d, groups=g)
    np.testing.assert_allclose(out.numpy(), naive_conv(x, wt, b, s, p, d, g), rtol=1e-10, atol=1e-10)
    assert_grads_close(lambda x_, w_, b_: F.conv2d(x_, w_, b_, stride=s, padding=p, dilation=d, groups=g), [x, wt, b])


def test_conv2d_float32_default():
    out = F.conv2d(megq.Tensor(randn(1, 2, 4, 4).astype(np.float32)), megq.Parameter(randn(3, 2, 3, 3)))
    assert out.dtype == np.float32 and out.shape == (1, 3, 2, 2)


def test_conv2d_errors():
    x, w = megq.Tensor(randn(1, 3, 5, 5)), megq.Tensor(randn(4, 3, 3, 3))
    with pytest.raises(ValueError, match="inp"):
        F.conv2d(megq.Tensor(randn(3, 5, 5)), w)
    with pytest.raises(ValueError, match="channels"):
        F.conv2d(megq.Tensor(randn(1, 2, 5, 5)), w)
    with pytest.raises(TypeError, match="stride"):
        F.conv2d(x, w, stride="2")
    with pytest.raises(ValueError, match="groups"):
        F.conv2d(x, w, groups=0)


def test_linear():
    x, w, b = randn(4, 5), randn(3, 5), randn(3)
    np.testing.assert_allclose(F.linear(megq.Tensor(x), megq.Tensor(w), megq.Tensor(b)).numpy(), x @ w.T + b)
    assert_grads_close(F.linear, [x, w, b])


@pytest.mark.parametrize("shape", [(6, 3), (3, 4, 3, 2)])
def test_batch_norm_train(shape):
    x, gam, bet = randn(*shape), randn(shape[1]), randn(shape[1])
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    rm, rv = megq.Tensor(np.zeros(shape[1])), megq.Tensor(np.ones(shape[1]))
    out = F.batch_norm(megq.Tensor(x), rm, rv, megq.Tensor(gam), megq.Tensor(bet), training=True, momentum=0.9)
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    ref = (x - mu.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-5) * gam.reshape(bshape) + bet.reshape(bshape)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-9, atol=1e-9)
    m = x.size // shape[1]
    np.testing.assert_allclose(rm.numpy(), 0.1 * mu)
    np.testing.assert_allclose(rv.numpy(), 0.9 + 0.1 * var * m / (m - 1))
    def fn(x_, g_, b_):
        return F.batch_norm(x_, None, None, g_, b_, training=True)
    assert_grads_close(fn, [x, gam, bet])


def test_batch_norm_eval():
    x, gam, bet = randn(3, 4, 2, 2), randn(4), randn(4)
    rm, rv = randn(4), np.abs(randn(4)) + 0.5
    out = F.batch_norm(megq.Tensor(x), megq.Tensor(rm), megq.Tensor(rv), megq.Tensor(gam), megq.Tensor(bet))
    b = (1, -1, 1, 1)
    ref = (x - rm.reshape(b)) / np.sqrt(rv.reshape(b) + 1e-5) * gam.reshape(b) + bet.reshape(b)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10)
    def fn(x_, g_, b_):
        return F.batch_norm(x_, megq.Tensor(rm), megq.Tensor(rv), g_, b_, training=False)
    assert_grads_close(fn, [x, gam, bet])
    with pytest.raises(ValueError, match="running_mean"):
        F.batch_norm(megq.Tensor(x), training=False)


def _away_from_kinks(x, points):
    x = x.copy()
    for p in points:
        x[np.abs(x - p) < 1e-3] += 0.01
    return x


@pytest.mark.parametrize("name,ref,kinks", [
    ("relu", lambda x: np.maximum(x, 0), [0]),
    ("relu6", lambda x: np.clip(x, 0, 6), [0, 6]),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x)), []),
    ("hswish", lambda x: x * np.clip(x + 3, 0, 6) / 6, [-3, 3]),
])
def test_activations(name, ref, kinks):
    x = _away_from_kinks(randn(3, 7) * 4, kinks)
    fn = getattr(F, name)
    np.testing.assert_allclose(fn(megq.Tensor(x)).numpy(), ref(x), rtol=1e-12)
    assert_grads_close(fn, [x])


@pytest.mark.parametrize("op,ref", [("add", np.add), ("sub", np.subtract), ("mul", np.multiply)])
def test_binary_broadcast(op, ref):
    a, b = randn(2, 3, 4), randn(3, 1)
    np.testing.assert_allclose(getattr(F, op)(megq.Tensor(a), megq.Tensor(b)).numpy(), ref(a, b))
    assert_grads_close(getattr(F, op), [a, b])


def test_tensor_operators_grad():
    assert_grads_close(lambda a, b: (a * b - a / (b * b + 1.0) + (-a) ** 2).sum(axis=1), [randn(3, 4), randn(3, 4)])
    assert_grads_close(lambda a, b: a @ b, [randn(3, 4), randn(4, 2)])
    assert_grads_close(lambda a: a.mean(axis=(0, 2), keepdims=True), [randn(2, 3, 4)])
    assert_grads_close(lambda a: a[1:, ::2].reshape(-1).transpose(), [randn(3, 4)])


def test_shape_ops():
    a, b = randn(2, 3, 2, 2), randn(2, 1, 2, 2)
    np.testing.assert_allclose(F.concat([megq.Tensor(a), megq.Tensor(b)], axis=1).numpy(), np.concatenate([a, b], 1))
    assert_grads_close(lambda x, y: F.concat([x, y], axis=1), [a, b])
    assert F.flatten(megq.Tensor(a), 1).shape == (2, 12)
    assert_grads_close(lambda x: F.flatten(x, 1), [a])
    assert_grads_close(lambda x: F.reshape(x, (4, 6)), [a])
    with pytest.raises(ValueError, match="shape"):
        F.reshape(megq.Tensor(a), (5, 5))


def naive_pool(x, k, s, p, reduce, exclude_pad=True):
    n, c, h, w = x.shape
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            y0, x0 = i * s - p, j * s - p
            ys, xs = slice(max(y0, 0), min(y0 + k, h)), slice(max(x0, 0), min(x0 + k, w))
            win = x[:, :, ys, xs]
            if reduce == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                out[:, :, i, j] = win.sum(axis=(2, 3)) / (win.shape[2] * win.shape[3] if exclude_pad else k * k)
    return out


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_pooling(k, s, p):
    x = randn(2, 3, 7, 6)
    np.testing.assert_allclose(F.max_pool2d(megq.Tensor(x), k, s, p).numpy(), naive_pool(x, k, s, p, "max"))
    np.testing.assert_allclose(F.avg_pool2d(megq.Tensor(x), k, s, p).numpy(), naive_pool(x, k, s, p, "avg"))
    np.testing.assert_allclose(F.avg_pool2d(megq.Tensor(x), k, s, p, mode="average").numpy(),
                               naive_pool(x, k, s, p, "avg", exclude_pad=False))
    assert_grads_close(lambda t: F.max_pool2d(t, k, s, p), [x])
    assert_grads_close(lambda t: F.avg_pool2d(t, k, s, p), [x])


def test_adaptive_avg_pool():
    x = randn(2, 3, 7, 5)
    out = F.adaptive_avg_pool2d(megq.Tensor(x), (3, 2)).numpy()
    np.testing.assert_allclose(out[:, :, 0, 0], x[:, :, 0:3, 0:3].mean(axis=(2, 3)))
    np.testing.assert_allclose(out[:, :, 2, 1], x[:, :, 4:7, 2:5].mean(axis=(2, 3)))
    np.testing.assert_allclose(F.adaptive_avg_pool2d(megq.Tensor(x), 1).numpy()[:, :, 0, 0], x.mean(axis=(2, 3)))
    assert_grads_close(lambda t: F.adaptive_avg_pool2d(t, (3, 2)), [x])
    assert_grads_close(lambda t: F.adaptive_avg_pool2d(t, 1), [x])


def test_softmax_family():
    x = randn(4, 5)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(F.softmax(megq.Tensor(x), axis=1).numpy(), e / e.sum(1, keepdims=True))
    np.testing.assert_allclose(F.log_softmax(megq.Tensor(x), axis=1).numpy(), np.log(e / e.sum(1, keepdims=True)))
    assert_grads_close(lambda t: F.softmax(t, axis=1), [x])
    assert_grads_close(lambda t: F.log_softmax(t, axis=0), [x])


@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_cross_entropy(ls):
    z, y = randn(5, 4), np.array([0, 3, 1, 1, 2])
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    q = np.eye(4)[y] * (1 - ls) + ls / 4
    ref = -(q * np.log(p)).sum(1).mean()
    np.testing.assert_allclose(F.cross_entropy(megq.Tensor(z), megq.Tensor(y), label_smoothing=ls).item(), ref)
    assert_grads_close(lambda t: F.cross_entropy(t, megq.Tensor(y), label_smoothing=ls), [z])
    assert_grads_close(lambda t: F.cross_entropy(t, megq.Tensor(y), with_logits=False, reduction="sum"), [p])
    with pytest.raises(ValueError, match="label"):
        F.cross_entropy(megq.Tensor(z), megq.Tensor(np.array([0, 4, 1, 1, 2])))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(megq.Tensor(z), megq.Tensor(y), label_smoothing=1.5)


def test_topk_accuracy():
    z = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    y = np.array([2, 0, 0])
    top1, top2 = F.topk_accuracy(megq.Tensor(z), megq.Tensor(y), (1, 2))
    assert top1.item() == pytest.approx(1 / 3) and top2.item() == pytest.approx(2 / 3)


def test_dropout():
    megq.random.seed(0)
    x = np.ones((200, 50))
    out = F.dropout(megq.Tensor(x), 0.3).numpy()
    kept = out != 0
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_allclose(out[kept], 1 / 0.7)
    assert np.array_equal(F.dropout(megq.Tensor(x), 0.3, training=False).numpy(), x)
    with pytest.raises(ValueError, match="drop_prob"):
        F.dropout(megq.Tensor(x), 1.0)


def test_large_shapes_use_threaded_paths():
    """Shapes above the thread-pool threshold (row-split im2col/matmul, blocked BN) against numpy references."""
    from megq.autodiff import GradManager

    r = np.random.default_rng(7)
    x = r.standard_normal((8, 16, 32, 32)).astype(np.float32)
    w = (r.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32)
    g = r.standard_normal((8, 16, 32, 32)).astype(np.float32)
    tx, tw = megq.Tensor(x), megq.Parameter(w)
    gm = GradManager().attach([tx, tw])
    with gm:
        y = F.conv2d(tx, tw, padding=1)
        gm.backward(y, g)
    x64, w64, g64 = x.astype(np.float64), w.astype(np.float64), g.astype(np.float64)
    np.testing.assert_allclose(y.numpy(), naive_conv(x64, w64, None, 1, 1, 1, 1), rtol=1e-4, atol=1e-4)
    xp = np.pad(x64, ((0, 0), (0, 0), (1, 1), (1, 1)))
    gw = np.stack([np.stack([np.einsum("nohw,nchw->oc", g64, xp[:, :, i:i + 32, j:j + 32]) for j in range(3)], -1)
                   for i in range(3)], -2)
    np.testing.assert_allclose(tw.grad.numpy(), gw, rtol=1e-3, atol=1e-2)
    # input gradient = full correlation of the output gradient with the flipped, transposed kernel
    gx = naive_conv(g64, w64[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), None, 1, 1, 1, 1)
    np.testing.assert_allclose(tx.grad.numpy(), gx, rtol=1e-3, atol=1e-3)

    xb = (r.standard_normal((64, 16, 32, 32)) * 2 + 1).astype(np.float32)
    gam, bet = r.uniform(0.5, 1.5, 16).astype(np.float32), r.standard_normal(16).astype(np.float32)
    tb, tg = megq.Tensor(xb), megq.Parameter(gam)
    gm = GradManager().attach([tb, tg])
    gy = r.standard_normal(xb.shape).astype(np.float32)
    with gm:
        out = F.batch_norm(tb, None, None, tg, megq.Tensor(bet), training=True)
        gm.backward(out, gy)
    xb64, gy64 = xb.astype(np.float64), gy.astype(np.float64)
    mu, var = xb64.mean((0, 2, 3), keepdims=True), xb64.var((0, 2, 3), keepdims=True)
    xhat = (xb64 - mu) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(out.numpy(), xhat * gam.reshape(1, -1, 1, 1) + bet.reshape(1, -1, 1, 1), atol=1e-4)
    gxhat = gy64 * gam.reshape(1, -1, 1, 1)
    ref_gx = (gxhat - gxhat.mean((0, 2, 3), keepdims=True) - xhat * (gxhat * xhat).mean((0, 2, 3), keepdims=True)) \
        / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(tb.grad.numpy(), ref_gx, atol=1e-4)
    np.testing.assert_allclose(tg.grad.numpy(), (gy64 * xhat).sum((0, 2, 3)), rtol=1e-3)
