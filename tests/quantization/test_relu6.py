"""Fused ReLU6 (float, QAT and quantized trees), its int8 clamp bound, standalone activations on quantized values,
the quantized-region rule for activations without an int8 form, and float layers of a Q model under megq's thread
setting."""
from __future__ import annotations

import numpy as np
import pytest

import megq
import megq.functional as F
import megq.module as M
import megq.quantization as Q
from megq.autodiff import no_grad
from megq.functional.quantized import activation_bounds
from megq.module import qat as QAT
from megq.module import quantized as QM
from megq.qtensor import QuantizedTensor


def oracle_bounds(scale, zp, qmin, qmax, act):
    """Independent: ReLU6's upper bound is where 6.0 quantizes (float32 division, round half away from zero)."""
    if act is None:
        return qmin, qmax
    lo = max(qmin, zp)
    if act == "relu":
        return lo, qmax
    v = float(np.float32(6.0) / np.float32(scale))
    six = int(np.sign(v) * np.floor(abs(v) + 0.5))
    return lo, min(qmax, zp + six)


@pytest.mark.parametrize("scale,zp,qmin,qmax", [
    (6 / 127, 0, -128, 127), (6 / 255, 0, 0, 255), (0.1, 3, 0, 255), (0.05, -10, -128, 127), (0.024, 0, -128, 127),
    (6 / 6.5, 0, -128, 127), (1e-5, 0, -128, 127), (0.7, 120, 0, 255), (0.5, 0, -8, 7)])
@pytest.mark.parametrize("act", [None, "relu", "relu6"])
def test_activation_bounds(scale, zp, qmin, qmax, act):
    assert activation_bounds(np.float32(scale), zp, qmin, qmax, act) == oracle_bounds(scale, zp, qmin, qmax, act)
    with pytest.raises(ValueError, match="activation"):
        activation_bounds(scale, zp, qmin, qmax, "gelu")


def test_fused_relu6_names_in_every_tree():
    for name, base in (("ConvRelu62d", M.Conv2d), ("ConvBnRelu62d", M.Module), ("LinearRelu6", M.Linear)):
        f, q, i = getattr(M, name), getattr(QAT, name), getattr(QM, name)
        assert f.fused_activation == q.fused_activation == i.fused_activation == "relu6"
        assert issubclass(q, f) and issubclass(f, base) and issubclass(i, QM.QuantizedModule)
    x = megq.Tensor(np.linspace(-10, 10, 2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4))
    conv = M.ConvRelu62d(3, 5, 1)
    y = conv(x).numpy()
    ref = np.clip(M.Conv2d.forward(conv, x).numpy(), 0, 6)
    np.testing.assert_array_equal(y, ref)


class Net(M.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = M.QuantStub(), M.DequantStub()
        self.c1 = M.ConvBnRelu62d(3, 8, 3, padding=1)
        self.c2 = M.ConvRelu62d(8, 8, 3, padding=1, groups=8)
        self.c3 = M.ConvBn2d(8, 8, 1)
        self.act = M.ReLU6()
        self.flat = M.Flatten()
        self.fc = M.LinearRelu6(8 * 6 * 6, 10)

    def forward(self, x):
        x = self.act(self.c3(self.c2(self.c1(self.quant(x)))))
        return self.dequant(self.fc(self.flat(x)))


def _qfloat(net, qconfig, rng, scale=4.0):
    net.eval()
    qat = Q.quantize_qat(net, inplace=False, qconfig=qconfig)
    qat.train()
    Q.disable_fake_quant(qat)
    with no_grad():
        for _ in range(3):
            qat(megq.Tensor(scale * rng.standard_normal((4, 3, 6, 6)).astype(np.float32)))
    Q.enable_fake_quant(qat)
    return qat.eval()


def _outputs(model, x):
    seen = {}
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o) if isinstance(o, QuantizedTensor)
                                       else None) for n, m in model.named_modules()]
    with no_grad():
        y = model(megq.Tensor(x)).numpy()
    for h in handles:
        h.remove()
    return y, seen


@pytest.mark.parametrize("qconfig", ["ema_fakequant_qconfig", "ema_fakequant_qconfig_per_channel_quint8"])
def test_relu6_qfloat_equals_q_and_is_a_clamp(qconfig):
    rng = np.random.default_rng(0)
    megq.random.seed(0)
    qat = _qfloat(Net(), getattr(Q, qconfig), rng)
    qmodel = Q.quantize(qat, inplace=False).eval()
    assert isinstance(qmodel.c1, QM.ConvBnRelu62d) and isinstance(qmodel.fc, QM.LinearRelu6)
    x = 4.0 * rng.standard_normal((3, 3, 6, 6)).astype(np.float32)
    y_qf, layers_qf = _outputs(qat, x)
    y_q, layers_q = _outputs(qmodel, x)
    assert set(layers_qf) == set(layers_q) and {"c1", "c2", "act", "fc"} <= set(layers_q)
    for name in layers_q:  # QFloat (exact eval) and Q: the same integers in every layer
        np.testing.assert_array_equal(layers_qf[name].data, layers_q[name].data, err_msg=name)
    np.testing.assert_array_equal(y_qf, y_q)
    for name in ("c1", "c2", "act", "fc"):  # ReLU6 is the clamp [max(qmin, z), z + round(6 / s)]
        t = layers_q[name]
        lo, hi = oracle_bounds(t.scale, t.zero_point, t.qmin, t.qmax, "relu6")
        assert t.data.min() >= lo and t.data.max() <= hi
        assert (t.data == hi).any() or hi == t.qmax, name  # inputs of size 4 drive some outputs past 6


def test_standalone_relu6_on_quantized_values():
    q = QuantizedTensor(np.arange(-128, 128, dtype=np.int8).reshape(1, 1, 16, 16).transpose(0, 2, 3, 1).copy(),
                        np.float32(0.05), -10, -128, 127)
    out = F.relu6(q)
    lo, hi = oracle_bounds(0.05, -10, -128, 127, "relu6")
    np.testing.assert_array_equal(out.data, np.clip(q.data, lo, hi))
    assert (out.scale, out.zero_point) == (q.scale, q.zero_point) and hi == -10 + 120


class SigmoidInside(M.Module):
    def __init__(self, after_dequant):
        super().__init__()
        self.quant, self.dequant = M.QuantStub(), M.DequantStub()
        self.conv = M.ConvBn2d(3, 4, 3, padding=1)
        self.gate = M.Sigmoid()
        self.conv2 = M.Conv2d(4, 4, 1)
        self.after = after_dequant

    def forward(self, x):
        x = self.conv(self.quant(x))
        if self.after:
            return self.gate(self.dequant(self.conv2(x)))
        return self.dequant(self.conv2(self.gate(x)))


@pytest.mark.parametrize("preset", ["ema_fakequant_qconfig", "calibration_qconfig",
                                    "calibration_qconfig_kl_per_channel"])
def test_activation_without_int8_form_fails_at_quantize_naming_it(preset):
    # Histogram presets attach no qparams while calibrating: the quantized region is still recognised.
    rng = np.random.default_rng(1)
    qat = Q.quantize_qat(SigmoidInside(after_dequant=False).eval(), inplace=False, qconfig=getattr(Q, preset))
    Q.calibrate(qat, [4.0 * rng.standard_normal((4, 3, 6, 6)).astype(np.float32)], progress=False)
    with pytest.raises(ValueError, match=r"quantize: 'gate' is a Sigmoid inside the quantized region.*DequantStub"):
        Q.quantize(qat, inplace=False)
    # after the DequantStub it is outside the region: fine
    qat = _qfloat(SigmoidInside(after_dequant=True), Q.ema_fakequant_qconfig, rng)
    qmodel = Q.quantize(qat, inplace=False).eval()
    with no_grad():
        y = qmodel(megq.Tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))).numpy()
    assert y.shape == (2, 4, 6, 6) and (y > 0).all() and (y < 1).all()


def test_float_layers_of_a_q_model_follow_megq_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from megq import models

    rng = np.random.default_rng(2)
    net = models.resnet8(num_classes=10, quantize_classifier=False)
    qat = Q.quantize_qat(net.eval(), inplace=False, qconfig=Q.ema_fakequant_qconfig)
    Q.enable_observer(qat)
    with no_grad():
        qat(megq.Tensor(rng.standard_normal((2, 3, 16, 16)).astype(np.float32)))
    qmodel = Q.quantize(qat, inplace=False).eval()
    assert qmodel.fc._blas_threads_as_megq and type(qmodel.fc) is M.Linear
    assert not any(m._blas_threads_as_megq for m in qmodel.modules() if isinstance(m, QM.QuantizedModule))
    seen = []
    real = F.linear

    def spy(*a, **k):
        seen.append({i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"})
        return real(*a, **k)

    previous = megq.get_num_threads()
    outside = {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}
    try:
        for n in (1, 2):
            megq.set_num_threads(n)
            F.linear = spy
            with no_grad():
                qmodel(megq.Tensor(rng.standard_normal((1, 3, 16, 16)).astype(np.float32)))
            F.linear = real
            assert seen[-1] == {n}
            assert {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"} == outside
    finally:
        F.linear = real
        megq.set_num_threads(previous)
