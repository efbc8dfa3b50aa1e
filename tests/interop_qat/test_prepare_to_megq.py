"""prepare_qat on torchvision-layout ResNets, a few training steps in torch, to_megq, quantize: the torch model's
eval-mode quantized activations against megq's at every quantized layer.

* integer eval (``set_integer_eval``): bit-identical to megq's QFloat eval and to the Q model at every layer;
* float fake-quant eval: the QuantStub is bit-identical (a pure fake quant of the same input); every conv / fc can
  differ where torch's and megq's float convolutions sum in different orders and the sums straddle a rounding
  boundary: by one quantization step there, compounding to a few steps downstream; bounded below.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import megq.quantization as Q  # noqa: E402
from megq.interop import torch_qat  # noqa: E402
from megq.interop.torch_qat import prepare_qat, set_integer_eval, to_megq  # noqa: E402
from megq.interop.torch_qat.convert import layer_names  # noqa: E402
from megq.quantization.integer_eval import integer_eval  # noqa: E402

from .qat_nets import ResNet, batches, megq_layer_outputs, torch_layer_outputs, train  # noqa: E402

PRESETS = ["ema_fakequant_qconfig", "ema_fakequant_qconfig_per_channel_quint8", "min_max_fakequant_qconfig",
           "sync_ema_fakequant_qconfig"]


def _trained(preset, seed=0, imagenet=False, shape=(8, 1, 16, 16), steps=3):
    torch.manual_seed(seed)
    net = ResNet(1, in_channels=shape[1], imagenet=imagenet)
    qat = prepare_qat(net, preset)
    losses = train(qat, batches(steps, shape, seed + 1))
    assert all(np.isfinite(losses))
    return net, qat.eval()


def test_prepare_qat_shares_parameters_and_uses_megq_names():
    net = ResNet(1)
    qat = prepare_qat(net, "ema_fakequant_qconfig_per_channel")
    assert qat.layer2[0].conv_bn_relu1.conv.weight is net.layer2[0].conv1.weight
    assert qat.layer2[0].downsample.bn is net.layer2[0].downsample[1]
    assert qat.fc.weight is net.fc.weight
    mq = Q.quantize_qat(__import__("megq").models.resnet8(in_channels=1), Q.ema_fakequant_qconfig_per_channel)
    keys = {k for k in qat.state_dict() if not k.endswith("num_batches_tracked")}
    assert keys == set(mq._state_tensors())
    assert qat.layer1[0].conv_bn2.weight_observer.min_val.shape == (16,)  # sized from the weight
    before = net.conv1.weight.detach().clone()
    train(qat, batches(2, (4, 1, 16, 16), 3))
    assert not torch.equal(before, net.conv1.weight)  # the source model trains through the QAT model
    ob = qat.quant.act_observer
    assert ob.runtime_momentum.item() == np.float32(0.9) and ob.max_val.item() > 0


@pytest.mark.parametrize("preset", PRESETS)
def test_integer_eval_bit_identical_to_megq_qfloat_and_q_model(preset):
    _, qat = _trained(preset)
    x = batches(1, (16, 1, 16, 16), 7)[0][0]
    names = list(layer_names(qat))
    assert len(names) == 14  # quant, stem, 3 x (2 convs + add) + 2 downsamples, fc
    set_integer_eval(qat, True)
    t_int, t_out = torch_layer_outputs(qat, names, x)
    mq = to_megq(qat)
    assert not mq.training
    m_int, m_out = megq_layer_outputs(mq, names, x)
    q = Q.quantize(mq, inplace=False)
    q.eval()
    q_int, q_out = megq_layer_outputs(q, names, x)
    for name in names:
        assert t_int[name][1] is not None, name  # really the integer path
        np.testing.assert_array_equal(t_int[name][0], m_int[name][0], err_msg=name)
        np.testing.assert_array_equal(t_int[name][0], q_int[name][0], err_msg=name)
        assert t_int[name][1] == m_int[name][1] == q_int[name][1], name
    np.testing.assert_array_equal(t_out, m_out)
    np.testing.assert_array_equal(t_out, q_out)
    # the activations are not trivial: several levels used at the output
    assert len(np.unique(t_int["fc"][0])) > 10


@pytest.mark.parametrize("preset", PRESETS[:2])
def test_float_eval_matches_megq_within_bound(preset):
    _, qat = _trained(preset)
    x = batches(1, (16, 1, 16, 16), 8)[0][0]
    names = list(layer_names(qat))
    t_f, t_out = torch_layer_outputs(qat, names, x)
    mq = to_megq(qat)
    with integer_eval(False):
        m_f, m_out = megq_layer_outputs(mq, names, x)
    np.testing.assert_array_equal(t_f["quant"][0], m_f["quant"][0])
    for name in names:
        scale = qat.get_submodule(name).get_activation_qparams()[0].item()
        steps = np.abs(t_f[name][0] - m_f[name][0]) / np.float32(scale)
        # a difference is a whole number of steps (both sides are on the same grid), at most 2, on <= 0.5 %
        assert np.all(np.abs(steps - np.round(steps)) < 1e-3), name
        assert steps.max() <= 2 and (steps > 0.5).mean() <= 0.005, (name, steps.max(), (steps > 0.5).mean())
    # and the float path differs from the integer path (the test above would notice mixing them up)
    set_integer_eval(qat, True)
    _, t_int_out = torch_layer_outputs(qat, names, x)
    assert np.abs(t_int_out - t_out).max() > 0


def test_imagenet_layout_with_max_pool():
    _, qat = _trained("ema_fakequant_qconfig_per_channel_quint8", imagenet=True, shape=(2, 3, 32, 32), steps=2)
    x = batches(1, (2, 3, 48, 48), 9)[0][0]
    names = list(layer_names(qat))
    set_integer_eval(qat, True)
    t_int, t_out = torch_layer_outputs(qat, names, x)
    mq = to_megq(qat)
    assert type(mq).__name__ == "ResNet"
    m_int, m_out = megq_layer_outputs(mq, names, x)
    for name in names:
        np.testing.assert_array_equal(t_int[name][0], m_int[name][0], err_msg=name)
    np.testing.assert_array_equal(t_out, m_out)


def test_bottleneck_imagenet_layout():
    torch.manual_seed(2)
    qat = prepare_qat(ResNet(1, in_channels=3, imagenet=True, bottleneck=True), "ema_fakequant_qconfig")
    train(qat, batches(1, (2, 3, 32, 32), 3))
    qat.eval()
    names = list(layer_names(qat))
    assert "layer4.0.conv_bn3" in names and "layer4.0.conv_bn_relu2" in names
    set_integer_eval(qat, True)
    x = batches(1, (2, 3, 32, 32), 4)[0][0]
    t_int, t_out = torch_layer_outputs(qat, names, x)
    mq = to_megq(qat)
    assert isinstance(mq.layer1[0], __import__("megq").models.Bottleneck)
    m_int, m_out = megq_layer_outputs(mq, names, x)
    for name in names:
        np.testing.assert_array_equal(t_int[name][0], m_int[name][0], err_msg=name)
    np.testing.assert_array_equal(t_out, m_out)


def test_to_megq_carries_switches_and_training_mode():
    _, qat = _trained("ema_fakequant_qconfig", steps=1)
    qat.train()
    qat.layer1[0].conv_bn2.act_fake_quant.enabled = False
    mq = to_megq(qat)
    assert mq.training and mq.quant.act_observer.enabled
    assert not mq.layer1[0].conv_bn2.act_fake_quant.enabled
    assert mq.layer1[0].conv_bn_relu1.act_fake_quant.enabled
    np.testing.assert_array_equal(mq.layer3[0].conv_bn2.bn.running_var.numpy(),
                                  qat.layer3[0].conv_bn2.bn.running_var.numpy())
    assert mq.layer3[0].conv_bn2.bn.momentum == pytest.approx(0.9)


def test_integer_eval_refuses_collecting_observers():
    _, qat = _trained("ema_fakequant_qconfig", steps=1)
    set_integer_eval(qat, True)
    x = batches(1, (2, 1, 16, 16), 6)[0][0]
    assert isinstance(qat(x), torch.Tensor)
    qat.layer1[0].add.act_observer.enabled = True  # megq's quant_active() is False then: no integer path
    with pytest.raises(ValueError, match="outside integer eval"):
        qat(x)
    qat.layer1[0].add.act_observer.enabled = False
    set_integer_eval(qat, False)
    qat.quant.act_fake_quant.enabled = False  # the float path with a fake quant off still runs
    assert isinstance(qat(x), torch.Tensor)


def test_bad_input():
    with pytest.raises(ValueError, match="unknown preset"):
        prepare_qat(ResNet(1), "no_such_preset")
    with pytest.raises(ValueError, match="FakeQuantize"):
        prepare_qat(ResNet(1), "calibration_qconfig")
    with pytest.raises(ValueError, match="None|FakeQuantize"):
        prepare_qat(ResNet(1), "tqt_qconfig")
    with pytest.raises(ValueError, match="torchvision-layout"):
        prepare_qat(torch.nn.Linear(3, 4))
    with pytest.raises(TypeError, match="torch_model"):
        prepare_qat("resnet")
    with pytest.raises(TypeError, match="sync"):
        prepare_qat(ResNet(1), sync="yes")
    with pytest.raises(TypeError, match="prepare_qat"):
        to_megq(ResNet(1))
    wide = ResNet(1)
    wide.conv1 = torch.nn.Conv2d(1, 16, 5, 1, 2, bias=False)  # no zoo model has a 5x5 CIFAR stem
    with pytest.raises(ValueError, match="no megq zoo ResNet"):
        prepare_qat(wide)


def test_package_exports_lazily():
    import megq.interop as interop

    assert interop.torch_qat is torch_qat
    assert torch_qat.__all__ == ["prepare_qat", "to_megq", "set_integer_eval"]


def test_training_forward_matches_megq_qat():
    """Train mode (MegEngine's BN folding with batch statistics, observers on): the same state in torch and megq
    gives the same weight qparams bit for bit (the folding is elementwise, in the same float32 order), the
    QuantStub output bit for bit, and every other layer within a step where float sums are ordered differently."""
    torch.manual_seed(4)
    net = ResNet(1)
    qat = prepare_qat(net, "ema_fakequant_qconfig_per_channel")
    train(qat, batches(1, (8, 1, 16, 16), 11))  # non-trivial BN statistics and observer state
    mq = to_megq(qat)
    assert mq.training
    x = batches(1, (8, 1, 16, 16), 12)[0][0]
    names = list(layer_names(qat))
    t_out, _ = torch_layer_outputs(qat, names, x)
    m_out, _ = megq_layer_outputs(mq, names, x)
    np.testing.assert_array_equal(t_out["quant"][0], m_out["quant"][0])
    mods = dict(mq.named_modules())
    for name in names:
        tm = qat.get_submodule(name)
        if tm.with_weight:
            tq, mqp = tm.weight_observer.get_qparams(), mods[name].get_weight_qparams()
            np.testing.assert_array_equal(tq[0].numpy(), mqp.scale, err_msg=name)
        s = np.float32(tm.get_activation_qparams()[0].item())
        np.testing.assert_allclose(s, mods[name].get_activation_qparams().scale, rtol=1e-5, err_msg=name)
        steps = np.abs(t_out[name][0] - m_out[name][0]) / s
        assert steps.max() <= 2.01 and (steps > 0.5).mean() <= 0.01, (name, steps.max(), (steps > 0.5).mean())
    for name in ("conv_bn_relu1", "layer3.0.conv_bn2"):
        np.testing.assert_allclose(qat.get_submodule(name).bn.running_var.numpy(),
                                   mods[name].bn.running_var.numpy(), rtol=1e-5)
