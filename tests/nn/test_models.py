"""Model definitions: parameter counts, MegEngine-style names, forward/backward shapes."""
import numpy as np
import pytest

import megq
import megq.functional as F
import megq.module as M
from megq import models
from megq.autodiff import GradManager, no_grad


def count(m):
    return sum(p.size for p in m.parameters())


@pytest.mark.parametrize("factory,expected", [
    (models.resnet18, 11_689_512), (models.resnet34, 21_797_672), (models.resnet50, 25_557_032),
    (models.mobilenet_v2, 3_504_872),
])
def test_imagenet_param_counts(factory, expected):
    assert count(factory()) == expected


def test_resnet8_structure():
    m = models.resnet8(in_channels=1)
    assert count(m) == 77_754
    keys = list(m.state_dict())
    assert keys[:2] == ["conv_bn_relu1.conv.weight", "conv_bn_relu1.bn.weight"]
    assert "layer2.0.downsample.bn.running_var" in keys and "layer1.0.conv_bn2.conv.weight" in keys
    assert isinstance(m.quant, M.QuantStub) and isinstance(m.dequant, M.DequantStub)
    assert m.layer1[0].add.method == "FUSE_ADD_RELU" and not m.fc.quantize_disabled and m.quantize_classifier
    assert count(models.resnet20()) == 272_474


def test_resnet8_forward_backward():
    megq.random.seed(0)
    m = models.resnet8(in_channels=1)
    x = megq.Tensor(np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32))
    gm = GradManager().attach(m.parameters())
    with gm:
        out = m(x)
        gm.backward(F.cross_entropy(out, megq.Tensor(np.array([0, 1, 2, 3]))))
    assert out.shape == (4, 10) and out.dtype == np.float32
    assert all(p.grad is not None and p.grad.shape == p.shape for p in m.parameters())


def test_imagenet_forwards_small_input():
    x = megq.Tensor(np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32))
    with no_grad():
        r = models.resnet18(num_classes=7).eval()
        assert r(x).shape == (1, 7)
        assert isinstance(r.maxpool, M.MaxPool2d) and r.conv_bn_relu1.conv.kernel_size == (7, 7)
        mb = models.mobilenet_v2(num_classes=5).eval()
        assert mb(x).shape == (1, 5)
        assert mb.features[1].conv[0].conv.groups == 32 and not mb.classifier.quantize_disabled


def test_mobilenet_v2_is_torchvisions_architecture():
    mb = models.mobilenet_v2()
    fused = [m for m in mb.modules() if isinstance(m, (M.ConvBnRelu2d, M.ConvBnRelu62d, M.ConvBn2d))]
    # 35 conv+BN+ReLU6 (stem, 17 depthwise, 16 expansions, last 1x1) and 17 linear projections; no plain ReLU
    assert sum(isinstance(m, M.ConvBnRelu62d) for m in fused) == 35
    assert sum(type(m) is M.ConvBn2d for m in fused) == 17 and not any(isinstance(m, M.ConvBnRelu2d) for m in fused)
    assert [type(m).__name__ for m in mb.features[2].conv] == ["ConvBnRelu62d", "ConvBnRelu62d", "ConvBn2d"]
    assert sum(m.add is not None for m in mb.features if hasattr(m, "add")) == 10
    # ReLU6 really clips at 6 in the float forward
    x = megq.Tensor(np.full((1, 3, 32, 32), 50.0, np.float32))
    with no_grad():
        y = mb.features[0].eval()(x).numpy()
    assert y.max() == 6.0 and y.min() >= 0.0


@pytest.mark.parametrize("factory", [models.resnet8, models.resnet18, models.mobilenet_v2])
def test_classifier_quantized_by_default_float_as_option(factory):
    x = megq.Tensor(np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32))
    q, f = factory(num_classes=4), factory(num_classes=4, quantize_classifier=False)
    head_q = q.fc if hasattr(q, "fc") else q.classifier
    head_f = f.fc if hasattr(f, "fc") else f.classifier
    assert not head_q.quantize_disabled and head_f.quantize_disabled
    f.load_state_dict(q.state_dict())
    with no_grad():  # the same float function either way; only where the DequantStub sits differs
        np.testing.assert_array_equal(q.eval()(x).numpy(), f.eval()(x).numpy())
    with pytest.raises(TypeError, match="quantize_classifier"):
        factory(quantize_classifier="yes")
