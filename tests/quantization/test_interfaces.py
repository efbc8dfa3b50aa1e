"""The seams between the quantization pieces: ``fused_activation`` decides ReLU fusion (never the class name),
``QuantizedModule.from_qat_module`` is the quantized modules' constructor interface, and the quantized layers'
kernel cache is declared transient."""
from __future__ import annotations

import numpy as np
import pytest

import megq
import megq.module as M
import megq.quantization as Q
from megq.module import qat as QAT
from megq.module import quantized as QM

FUSED = ["ConvRelu2d", "ConvBnRelu2d", "LinearRelu", "LinearBnRelu1d"]
UNFUSED = ["Conv2d", "ConvBn2d", "Linear", "LinearBn1d"]


@pytest.mark.parametrize("name", FUSED + UNFUSED)
def test_fused_activation_is_the_same_in_the_three_trees(name):
    want = "relu" if name in FUSED else None
    assert getattr(M, name).fused_activation == want
    assert getattr(QAT, name).fused_activation == want
    assert getattr(QM, name).fused_activation == want


def calibrated_conv() -> M.Sequential:
    """QuantStub -> QAT Conv2d -> DequantStub, calibrated on random data."""
    net = M.Sequential(M.QuantStub(), M.Conv2d(3, 4, 3, padding=1), M.DequantStub())
    qnet = Q.quantize_qat(net, qconfig=Q.calibration_qconfig)
    qnet.eval()
    Q.enable_observer(qnet)
    qnet(megq.Tensor(np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)))
    return qnet


class ReluLookalike(QAT.Conv2d):
    """Named like a fused class, but nothing is fused."""


class FusedUnderAnotherName(QAT.Conv2d):
    fused_activation = "relu"


class FusedSigmoid(QAT.Conv2d):
    fused_activation = "sigmoid"  # no int8 form (ReLU and ReLU6 are clamp bounds)


@pytest.mark.parametrize("cls, relu", [(QAT.Conv2d, False), (ReluLookalike, False), (FusedUnderAnotherName, True)])
def test_relu_fusion_follows_the_class_attribute(cls, relu):
    qnet = calibrated_conv()
    stub, conv, _ = qnet.children()
    conv.__class__ = cls
    layer = Q.IntegerLayer.from_qat(conv)
    assert layer.relu is relu
    q = M.Sequential(QM.QuantStub.from_qat_module(stub), QM.Conv2d.from_qat_module(conv))
    q.eval()
    out = q(megq.Tensor(np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)))
    lowest = int(out.data.min())
    if relu:
        assert lowest >= layer.out_zero_point
    else:
        assert lowest < layer.out_zero_point  # random weights give negative outputs, which a ReLU would clamp


def test_unsupported_fused_activation_is_refused():
    qnet = calibrated_conv()
    _, conv, _ = qnet.children()
    conv.__class__ = FusedSigmoid
    with pytest.raises(ValueError, match="fused activation 'sigmoid'"):
        Q.IntegerLayer.from_qat(conv)


def test_from_qat_module_is_the_quantized_interface():
    with pytest.raises(NotImplementedError, match="from_qat_module"):
        QM.QuantizedModule.from_qat_module(object())
    for name in QM.__all__:
        cls = getattr(QM, name)
        if cls is not QM.QuantizedModule:
            assert cls.from_qat_module.__func__ is not QM.QuantizedModule.from_qat_module.__func__, name


def test_quantized_kernel_cache_is_transient():
    assert M.Module._transient_attrs == ()
    for cls in (QM.Conv2d, QM.ConvBnRelu2d, QM.Linear, QM.LinearRelu):
        assert "_packed_cache" in cls._transient_attrs
    q = Q.quantize(calibrated_conv(), inplace=False)
    q.eval()
    q(megq.Tensor(np.zeros((1, 3, 6, 6), np.float32)))
    _, conv, _ = q.children()
    assert len(conv._packed_cache) == 1 and callable(next(iter(conv._packed_cache.values())))
