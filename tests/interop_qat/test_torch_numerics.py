"""megq's fake quantization and observers in torch (megq.interop.torch_qat.numerics) against megq itself, bit for
bit: forward on random tensors, exact .5 ties, clipping edges, NaN, per-channel and asymmetric scales; the clipped
straight-through gradient; observers' statistics and qparams over several batches."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import megq  # noqa: E402
import megq.quantization as Q  # noqa: E402
from megq.autodiff import GradManager  # noqa: E402
from megq.interop.torch_qat.numerics import FakeQuantize, Observer, calc_qparams, fake_quant, round_half_away  # noqa: E402,E501
from megq.quantization.dtype import get_dtype_meta  # noqa: E402
from megq.quantization.utils import QuantMode, create_qparams, fake_quant_tensor  # noqa: E402


def _megq_qp(scale, zp, dtype, axis=None):
    mode = QuantMode.SYMMERTIC if zp is None else QuantMode.ASYMMERTIC
    return create_qparams(mode, dtype, np.asarray(scale, np.float32), zp, axis)


def _torch_qp(scale, zp, dtype):
    m = get_dtype_meta(dtype, "test")
    return (torch.tensor(np.asarray(scale, np.float32)), None if zp is None else torch.tensor(np.asarray(zp, np.int32)),
            int(m.qmin), int(m.qmax), m.name)


def _megq_fq(x, qp, axis=None):
    xt = megq.Tensor(x)
    gm = GradManager().attach([xt])
    g = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    with gm:
        y = fake_quant_tensor(xt, qp, axis)
        gm.backward(y, g)
    return y.numpy(), xt.grad.numpy(), g


def _torch_fq(x, qp, g, axis=0):
    xt = torch.tensor(x, requires_grad=True)
    y = fake_quant(xt, qp, axis)
    y.backward(torch.tensor(g))
    return y.detach().numpy(), xt.grad.numpy()


def _ties_and_edges(s, qmin, qmax, zp=0):
    k = np.arange(qmin - zp - 3, qmax - zp + 4, dtype=np.float32)
    v = np.concatenate([k, k + 0.5, k - 0.5, k + 0.49999997, k - 0.49999997,
                        [qmin - zp - 0.5, qmax - zp + 0.5, qmin - zp - 0.5000001, qmax - zp + 0.5000001]])
    # x such that x / s lands on (or next to) a .5 tie: both neighbours of v*s in float32
    x = (v.astype(np.float32) * np.float32(s)).astype(np.float32)
    return np.concatenate([x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))])


@pytest.mark.parametrize("dtype,scale,zp", [("qint8", 0.05, None), ("qint8_narrow", 0.0123, None),
                                            ("quint8", 0.037, 113), ("qint4", 0.25, None), ("qint8", 1e-5, None),
                                            ("quint8", 0.1, 0)])
def test_fake_quant_equals_megq_bit_for_bit(dtype, scale, zp):
    m = get_dtype_meta(dtype, "test")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(4000).astype(np.float32) * np.float32(scale * (m.qmax - m.qmin) / 3),
                        _ties_and_edges(scale, m.qmin, m.qmax, zp or 0),
                        np.array([0.0, -0.0, np.inf, -np.inf, 3e38, -3e38], np.float32)])
    y_ref, g_ref, g = _megq_fq(x, _megq_qp(scale, zp, dtype))
    y, gx = _torch_fq(x, _torch_qp(scale, zp, dtype), g)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.view(np.int32), y_ref.view(np.int32))  # bit for bit, signed zeros included
    np.testing.assert_array_equal(gx, g_ref)
    # the ties really are ties, and torch's own fake quant (half to even) disagrees with megq on them
    if zp is None and scale == 0.05:
        ours = fake_quant(torch.tensor(x), _torch_qp(scale, zp, dtype))
        theirs = torch.fake_quantize_per_tensor_affine(torch.tensor(x), scale, 0, m.qmin, m.qmax)
        assert (ours != theirs).sum() > 10


def test_fake_quant_nan_stays_nan_and_has_no_gradient_change():
    x = np.array([np.nan, 1.0, -np.nan], np.float32)
    y_ref, g_ref, g = _megq_fq(x, _megq_qp(0.1, None, "qint8"))
    y, gx = _torch_fq(x, _torch_qp(0.1, None, "qint8"), g)
    assert np.isnan(y[[0, 2]]).all() and np.isnan(y_ref[[0, 2]]).all()
    assert y[1] == y_ref[1]
    np.testing.assert_array_equal(gx, g_ref)


@pytest.mark.parametrize("axis", [0, 1])
def test_per_channel_fake_quant(axis):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 5, 3, 3)).astype(np.float32)
    c = x.shape[axis]
    scale = (rng.uniform(0.005, 0.05, c)).astype(np.float32)
    shape = [1] * 4
    shape[axis] = c
    x[..., 0, 0] = (np.round(x[..., 0, 0] / scale.reshape(shape)[..., 0, 0]) + 0.5) * scale.reshape(shape)[..., 0, 0]
    y_ref, g_ref, g = _megq_fq(x, _megq_qp(scale, None, "qint8_narrow", axis), axis)
    y, gx = _torch_fq(x, _torch_qp(scale, None, "qint8_narrow"), g, axis)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(gx, g_ref)


def test_qint32_bias_bounds_and_round_half_away():
    v = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999997, -0.49999997, 2.0], dtype=torch.float32)
    assert round_half_away(v).tolist() == [1, 2, 3, -1, -3, 0, 0, 2]
    b = np.array([3.0e9, -3.0e9, 12.5, -7.25], np.float32)
    y_ref, _, g = _megq_fq(b, _megq_qp(0.5, None, "qint32"))
    y, _ = _torch_fq(b, _torch_qp(0.5, None, "qint32"), g)
    np.testing.assert_array_equal(y, y_ref)


def test_fake_quantize_module_checks_dtype_and_switch():
    fq = FakeQuantize("qint8")
    x = torch.tensor([0.26], dtype=torch.float32)
    with pytest.raises(ValueError, match="dtype"):
        fq(x, _torch_qp(0.1, None, "quint8"))
    assert fq(x, _torch_qp(0.1, None, "qint8")).item() == np.float32(np.float32(3) * np.float32(0.1))
    fq.enabled = False
    assert fq(x, _torch_qp(0.1, None, "qint8")) is x
    with pytest.raises(TypeError, match="float32"):
        fake_quant(x.double(), _torch_qp(0.1, None, "qint8"))


_OBSERVERS = [
    ("minmax", lambda: Q.MinMaxObserver(dtype="qint8"), dict(dtype="qint8")),
    ("minmax_narrow", lambda: Q.MinMaxObserver(dtype="qint8_narrow"), dict(dtype="qint8_narrow")),
    ("ema", lambda: Q.ExponentialMovingAverageObserver(dtype="qint8"), dict(dtype="qint8", momentum=0.9)),
    ("ema_quint8", lambda: Q.ExponentialMovingAverageObserver(momentum=0.7, mode=QuantMode.ASYMMERTIC,
                                                               dtype="quint8"),
     dict(dtype="quint8", momentum=0.7, symmetric=False)),
    ("per_channel", lambda: Q.PerChannelMinMaxObserver(dtype="qint8_narrow"),
     dict(dtype="qint8_narrow", per_channel=True)),
    ("per_channel_ema", lambda: Q.PerChannelExponentialMovingAverageObserver(dtype="qint8_narrow"),
     dict(dtype="qint8_narrow", per_channel=True, momentum=0.9)),
]


@pytest.mark.parametrize("name,make_megq,kw", _OBSERVERS, ids=[o[0] for o in _OBSERVERS])
def test_observers_equal_megq(name, make_megq, kw):
    ref = make_megq()
    ob = Observer(**kw)
    rng = np.random.default_rng(5)
    for step in range(5):
        x = (rng.standard_normal((4, 3, 5, 5)) * (1 + step) + rng.uniform(-2, 2)).astype(np.float32)
        if step == 3:
            x = np.abs(x)  # all positive: the range still includes 0
        ref(megq.Tensor(x))
        ob(torch.tensor(x))
        np.testing.assert_array_equal(ob.min_val.numpy(), ref.min_val.numpy())
        np.testing.assert_array_equal(ob.max_val.numpy(), ref.max_val.numpy())
        qp, rq = ob.get_qparams(), ref.get_qparams()
        np.testing.assert_array_equal(qp[0].numpy(), rq.scale)
        if rq.zero_point is None:
            assert qp[1] is None
        else:
            np.testing.assert_array_equal(qp[1].numpy(), rq.zero_point)
    ob.eval()
    ref.eval()
    ob(torch.full((4, 3, 5, 5), 1e6))
    np.testing.assert_array_equal(ob.max_val.numpy(), ref.max_val.numpy())  # eval: no update


def test_qparams_eps_and_empty_observer():
    for sym in (True, False):
        qp = calc_qparams(torch.tensor(0.0), torch.tensor(0.0), sym, -128, 127, 1e-5, "qint8")
        assert qp[0].item() == np.float32(1e-5)
    fresh, ref = Observer("qint8"), Q.MinMaxObserver(dtype="qint8")
    assert fresh.get_qparams()[0].item() == ref.get_qparams().scale  # no data yet: eps


def test_observer_rejects_non_finite_and_bad_arguments():
    with pytest.raises(ValueError, match="NaN or Inf"):
        Observer("qint8")(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="eps"):
        Observer("qint8", eps=0.0)
    with pytest.raises(ValueError, match="momentum"):
        Observer("qint8", momentum=1.5)
    with pytest.raises(ValueError):
        Observer("int7")
