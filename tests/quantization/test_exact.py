"""QFloat (eval) and Q agree bit for bit; quantize() conversion of every module type; its errors."""
from __future__ import annotations

import numpy as np
import pytest

import megq
import megq.module as M
import megq.quantization as Q
from megq import models
from megq.autodiff import no_grad
from megq.module import quantized as QM
from megq.qtensor import QuantizedTensor

QCONFIGS = ["ema_fakequant_qconfig", "ema_fakequant_qconfig_per_channel", "ema_fakequant_qconfig_quint8",
            "ema_fakequant_qconfig_per_channel_quint8"]


def calibrated_qfloat(net, shape, qconfig, rng, batches=2):
    """quantize_qat, then observe a few batches (fake quant off), then eval with fake quant on."""
    net.eval()
    qnet = Q.quantize_qat(net, inplace=False, qconfig=qconfig)
    qnet.train()
    Q.disable_fake_quant(qnet)
    with no_grad():
        for _ in range(batches):
            qnet(megq.Tensor(rng.standard_normal(shape).astype(np.float32)))
    Q.enable_fake_quant(qnet)
    return qnet.eval()


def layer_outputs(model, x):
    """Every QuantizedTensor a sub-module returns, in call order."""
    seen = []
    handles = [m.register_forward_hook(lambda mod, inp, out: seen.append(out.data.copy())
                                       if isinstance(out, QuantizedTensor) else None)
               for _, m in model.named_modules()]
    with no_grad():
        y = model(x)
    for h in handles:
        h.remove()
    return y, seen


def assert_qfloat_equals_q(qnet, x):
    qmodel = Q.quantize(qnet, inplace=False).eval()
    y_qf, layers_qf = layer_outputs(qnet, x)
    y_q, layers_q = layer_outputs(qmodel, x)
    assert len(layers_qf) == len(layers_q) > 0
    for a, b in zip(layers_qf, layers_q):  # every layer's int8 values, not just the logits
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(y_qf.numpy(), y_q.numpy())
    return qmodel


def digits_cnn():
    return M.Sequential(
        M.QuantStub(), M.ConvBnRelu2d(1, 8, 3, padding=1), M.MaxPool2d(2), M.ConvBn2d(8, 16, 3, stride=2, padding=1),
        M.ReLU(), M.AvgPool2d(2, 1), M.Flatten(), M.LinearRelu(16, 24), M.Linear(24, 10), M.DequantStub())


@pytest.mark.parametrize("qconfig", QCONFIGS)
def test_digits_cnn_every_layer_identical(qconfig):
    rng = np.random.default_rng(0)
    qnet = calibrated_qfloat(digits_cnn(), (8, 1, 8, 8), getattr(Q, qconfig), rng)
    assert_qfloat_equals_q(qnet, megq.Tensor(rng.standard_normal((16, 1, 8, 8)).astype(np.float32)))


@pytest.mark.parametrize("qconfig", QCONFIGS)
def test_cifar_resnet_identical(qconfig):
    rng = np.random.default_rng(1)
    qnet = calibrated_qfloat(models.resnet8(in_channels=3), (4, 3, 16, 16), getattr(Q, qconfig), rng)
    assert_qfloat_equals_q(qnet, megq.Tensor(rng.standard_normal((6, 3, 16, 16)).astype(np.float32)))


@pytest.mark.parametrize("qconfig", ["ema_fakequant_qconfig", "ema_fakequant_qconfig_per_channel_quint8"])
def test_mobilenet_v2_identical(qconfig):
    rng = np.random.default_rng(2)
    qnet = calibrated_qfloat(models.mobilenet_v2(num_classes=10), (2, 3, 32, 32), getattr(Q, qconfig), rng, 1)
    qmodel = assert_qfloat_equals_q(qnet, megq.Tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32)))
    assert any(isinstance(m, QM.Conv2d) and m.depthwise for m in qmodel.modules())  # depthwise kernels ran


def test_elemwise_concat_and_lowbit_identical():
    class Net(M.Module):
        def __init__(self):
            super().__init__()
            self.quant = M.QuantStub()
            self.a = M.ConvRelu2d(3, 6, 1)
            self.b = M.Conv2d(3, 6, 3, padding=1)
            self.add = M.Elemwise("add")
            self.mul = M.Elemwise("mul")
            self.cat = M.Concat()
            self.dequant = M.DequantStub()

        def forward(self, x):
            x = self.quant(x)
            a, b = self.a(x), self.b(x)
            return self.dequant(self.cat([self.add(a, b), self.mul(a, b), a], axis=1))

    rng = np.random.default_rng(3)
    for qconfig in (Q.ema_fakequant_qconfig, Q.ema_fakequant_qconfig_quint8, Q.ema_lowbit_fakequant_qconfig):
        qnet = calibrated_qfloat(Net(), (4, 3, 7, 7), qconfig, rng)
        assert_qfloat_equals_q(qnet, megq.Tensor(rng.standard_normal((3, 3, 7, 7)).astype(np.float32)))


def test_every_qat_module_type_converts():
    from megq.quantization.quantize import _get_quantized_convert_dict

    qnet = calibrated_qfloat(digits_cnn(), (4, 1, 8, 8), Q.ema_fakequant_qconfig, np.random.default_rng(4))
    qmodel = Q.quantize(qnet, inplace=False)
    kinds = [type(m).__name__ for m in qmodel.modules() if isinstance(m, QM.QuantizedModule)]
    assert kinds == ["QuantStub", "ConvBnRelu2d", "ConvBn2d", "LinearRelu", "Linear", "DequantStub"]
    assert not any(isinstance(m, M.qat.QATModule) for m in qmodel.modules())
    for name in ["Conv2d", "ConvRelu2d", "ConvBn2d", "ConvBnRelu2d", "Linear", "LinearRelu", "LinearBn1d",
                 "LinearBnRelu1d", "Elemwise", "Concat", "QuantStub", "DequantStub"]:
        assert issubclass(getattr(QM, name), QM.QuantizedModule)
        assert getattr(M.qat, name) in _get_quantized_convert_dict()


def test_quantized_module_refuses_training_mode():
    qnet = calibrated_qfloat(digits_cnn(), (4, 1, 8, 8), Q.ema_fakequant_qconfig, np.random.default_rng(5))
    qmodel = Q.quantize(qnet)  # MegEngine: new quantized modules are in training mode
    x = megq.Tensor(np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="only support inference.*model.eval"):
        qmodel(x)
    qmodel.eval()
    qmodel(x)


def test_quantize_before_calibration_is_refused():
    qnet = Q.quantize_qat(digits_cnn(), inplace=False, qconfig=Q.calibration_qconfig)
    with pytest.raises(ValueError, match="quantize: .0. was never calibrated: its act_observer has seen no data"):
        Q.quantize(qnet)


def test_unknown_module_in_mapping_and_bad_arguments():
    class CustomConv(M.qat.Conv2d):
        """A user's QAT subclass that has no quantized counterpart."""

    net = M.Sequential(M.QuantStub(), M.Conv2d(1, 2, 3), M.DequantStub())
    qnet = calibrated_qfloat(net, (2, 1, 5, 5), Q.ema_fakequant_qconfig, np.random.default_rng(6))
    conv = next(m for m in qnet.modules() if type(m) is M.qat.Conv2d)
    conv.__class__ = CustomConv
    with pytest.raises(TypeError, match="is a CustomConv with no quantized mapping"):
        Q.quantize(qnet, inplace=False)
    Q.quantize(qnet, inplace=False, mapping={CustomConv: QM.Conv2d})  # an explicit mapping works
    with pytest.raises(TypeError, match="module: expected a megq Module"):
        Q.quantize("net")
    with pytest.raises(TypeError, match="inplace: expected a bool"):
        Q.quantize(qnet, inplace=1)


def test_unsupported_elemwise_mode_is_named():
    class Net(M.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = M.QuantStub(), M.DequantStub()
            self.div = M.Elemwise("true_div")

        def forward(self, x):
            x = self.quant(x)
            return self.dequant(self.div(x, x))

    qnet = calibrated_qfloat(Net(), (2, 3, 4, 4), Q.ema_fakequant_qconfig, np.random.default_rng(7))
    with pytest.raises(ValueError, match="quantize: 'div'.*TRUE_DIV.*no int8 kernel"):
        Q.quantize(qnet, inplace=False)


def test_float_input_to_quantized_layer_is_explained():
    net = M.Sequential(M.Conv2d(1, 2, 3), M.DequantStub())  # no QuantStub
    qnet = calibrated_qfloat(net, (2, 1, 5, 5), Q.ema_fakequant_qconfig, np.random.default_rng(8))
    x = megq.Tensor(np.zeros((1, 1, 5, 5), np.float32))
    with no_grad():
        assert qnet(x).shape == (1, 2, 3, 3)  # the QFloat model keeps MegEngine's float fake-quant forward
    qmodel = Q.quantize(qnet, inplace=False).eval()
    with pytest.raises(TypeError, match="QuantStub must quantize the float input"):
        qmodel(x)
