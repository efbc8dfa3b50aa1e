"""prepare_qat / to_megq / integer eval on a torchvision-layout MobileNetV2 (ReLU6 fused into its conv as megq's
clamp bound, depthwise convs, inverted-residual adds without ReLU, Dropout + Linear classifier), small width and
input: the torch model's integer eval against megq's QFloat eval and Q model at every quantized layer, bit for bit;
the float fake-quant eval within the bound the ResNet tests use."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import megq  # noqa: E402
import megq.quantization as Q  # noqa: E402
from megq.interop.torch_qat import prepare_qat, set_integer_eval, to_megq  # noqa: E402
from megq.interop.torch_qat.convert import layer_names  # noqa: E402
from megq.quantization.integer_eval import integer_eval  # noqa: E402

from .qat_nets import MobileNetV2, batches, megq_layer_outputs, torch_layer_outputs, train  # noqa: E402

# t=1 first block, a residual block (features.3), stride-2 blocks, a residual at 32 channels
SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2)]
SHAPE = (4, 3, 32, 32)


def _trained(preset, seed=0, width=0.5, steps=3):
    torch.manual_seed(seed)
    net = MobileNetV2(10, width, SHAPE[1], SETTING)
    qat = prepare_qat(net, preset)
    losses = train(qat, batches(steps, SHAPE, seed + 1), lr=0.02)
    assert all(np.isfinite(losses))
    return net, qat.eval()


def _six_levels(qat, name):
    s = qat.get_submodule(name).get_activation_qparams()[0]
    # round half away from zero of the float32 quotient (positive), written independently of megq's kernels
    return int(np.floor(np.float64(np.float32(6.0) / np.float32(s.item())) + 0.5))


def test_layout_names_and_sharing():
    net = MobileNetV2(10, 0.5, 3, SETTING)
    qat = prepare_qat(net, "ema_fakequant_qconfig_per_channel")
    assert qat.features[2].conv[1].conv is net.features[2].conv[1][0]  # the depthwise conv, shared
    assert qat.features[2].conv[2].bn is net.features[2].conv[3]  # the linear projection's BN
    assert qat.classifier[1].weight is net.classifier[1].weight
    assert qat.features[3].add is not None and qat.features[2].add is None
    mq = Q.quantize_qat(megq.models.MobileNetV2(10, 0.5, 3, SETTING), Q.ema_fakequant_qconfig_per_channel)
    keys = {k for k in qat.state_dict() if not k.endswith("num_batches_tracked")}
    assert keys == set(mq._state_tensors())
    assert qat.features[2].conv[1].weight_observer.min_val.shape == (48,)  # per channel (8 x 6), depthwise


@pytest.mark.parametrize("preset", ["ema_fakequant_qconfig", "ema_fakequant_qconfig_per_channel_quint8"])
def test_integer_eval_bit_identical_to_megq_qfloat_and_q_model(preset):
    _, qat = _trained(preset)
    x = batches(1, (8, 3, 32, 32), 7)[0][0]
    names = list(layer_names(qat))
    with torch.no_grad():  # make the stem's ReLU6 clamp bind: values beyond 6 and a range (12) that holds them
        qat.features[0].bn.bias.add_(6.0)
        qat.features[0].act_observer.max_val.fill_(12.0)
    # convs: stem, the t=1 block (2), four expanding blocks (3 each), the last 1x1; plus quant, 2 adds, fc
    convs = [n for n in names if type(qat.get_submodule(n)).__name__ == "ConvBn"]
    assert len(convs) == 1 + 2 + 3 * 4 + 1 and {"features.3.add", "features.5.add", "classifier.1"} <= set(names)
    set_integer_eval(qat, True)
    t_int, t_out = torch_layer_outputs(qat, names, x)
    mq = to_megq(qat)
    assert type(mq).__name__ == "MobileNetV2" and not mq.training
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
    assert len(np.unique(t_int["classifier.1"][0])) > 10
    # ReLU6 is megq's clamp: no ReLU6 layer exceeds z + round_half_away(6 / s); the stem's bound (below qmax) binds
    for name in convs:
        m = qat.get_submodule(name)
        if m.activation != "relu6":
            continue
        zp = m.get_activation_qparams()[1]
        z = 0 if zp is None else int(zp.item())
        assert t_int[name][0].max() <= z + _six_levels(qat, name), name
        if name == "features.0":
            hi = z + _six_levels(qat, name)
            assert hi < m.get_activation_qparams()[3] and (t_int[name][0] == hi).mean() > 0.05


def test_float_eval_matches_megq_within_bound():
    _, qat = _trained("ema_fakequant_qconfig")
    x = batches(1, (8, 3, 32, 32), 8)[0][0]
    names = list(layer_names(qat))
    t_f, t_out = torch_layer_outputs(qat, names, x)
    mq = to_megq(qat)
    with integer_eval(False):
        m_f, m_out = megq_layer_outputs(mq, names, x)
    np.testing.assert_array_equal(t_f["quant"][0], m_f["quant"][0])
    for name in names:
        scale = qat.get_submodule(name).get_activation_qparams()[0].item()
        steps = np.abs(t_f[name][0] - m_f[name][0]) / np.float32(scale)
        assert np.all(np.abs(steps - np.round(steps)) < 1e-3), name
        assert steps.max() <= 2 and (steps > 0.5).mean() <= 0.005, (name, steps.max(), (steps > 0.5).mean())
    set_integer_eval(qat, True)
    _, t_int_out = torch_layer_outputs(qat, names, x)
    assert np.abs(t_int_out - t_out).max() > 0


def test_width_one_point_four_maps_to_the_zoo_width():
    """torchvision's width 1.4 has a 48-channel stem and a 1792-channel last conv: the zoo model is found from
    the last conv's width."""
    torch.manual_seed(1)
    net = MobileNetV2(4, 1.4, 3, [(1, 16, 1, 1), (6, 24, 1, 2)])
    qat = prepare_qat(net, "ema_fakequant_qconfig")
    assert qat.features[0].conv.out_channels == 48 and qat.features[-1].conv.out_channels == 1792
    mq = to_megq(qat)
    assert mq.features[-1].conv.weight.shape == (1792, 32, 1, 1)


def test_bad_mobilenet_layouts():
    net = MobileNetV2(10, 0.5, 3, SETTING)
    net.features[0][2] = torch.nn.ReLU()  # megq's MobileNetV2 uses ReLU6 everywhere
    with pytest.raises(ValueError, match="ReLU6"):
        prepare_qat(net)
    net = MobileNetV2(10, 0.5, 3, SETTING)
    net.classifier = torch.nn.Sequential(torch.nn.Linear(1280, 10))
    with pytest.raises(ValueError, match="classifier"):
        prepare_qat(net)
    net = MobileNetV2(10, 0.5, 3, SETTING)
    net.features[3].use_res_connect = False
    with pytest.raises(ValueError, match="use_res_connect"):
        prepare_qat(net)
    net = MobileNetV2(10, 0.5, 3, SETTING)
    net.features[-1] = torch.nn.Sequential(torch.nn.Conv2d(32, 1000, 1, bias=False), torch.nn.BatchNorm2d(1000),
                                           torch.nn.ReLU6())  # no zoo width has a 1000-channel last conv
    with pytest.raises(ValueError, match="no megq zoo MobileNetV2"):
        prepare_qat(net)
