"""quantize_qat(skip=[...]): named layers stay float between a DequantStub and a calibrated QuantStub; QFloat == Q
bit for bit; serialization round trip; the float layer's output reaches the next layer exactly re-quantized."""
from __future__ import annotations

import numpy as np
import pytest

import megq
import megq.module as M
import megq.quantization as Q
from megq.autodiff import no_grad
from megq.module import quantized as QM
from megq.quantization.quantize import FloatIsland

from .test_exact import assert_qfloat_equals_q


def net_with_sigmoid(rng):
    net = M.Sequential(M.QuantStub(), M.ConvBnRelu2d(3, 6, 3, padding=1), M.Sigmoid(), M.ConvBn2d(6, 6, 3, padding=1),
                       M.Flatten(), M.Linear(6 * 5 * 5, 4), M.DequantStub())
    return net.eval()


@pytest.mark.parametrize("preset", ["calibration_qconfig", "ema_fakequant_qconfig"])
def test_skip_keeps_layers_float_and_qfloat_equals_q(tmp_path, preset):
    rng = np.random.default_rng(0)
    net = net_with_sigmoid(rng)
    batches = [rng.standard_normal((4, 3, 5, 5)).astype(np.float32) for _ in range(2)]
    qat = Q.quantize_qat(net, inplace=False, qconfig=getattr(Q, preset), skip=["2", "5"])
    assert isinstance(qat[2], FloatIsland) and isinstance(qat[5], FloatIsland)
    assert type(qat[5].module) is M.Linear and isinstance(qat[5].quant, M.qat.QuantStub)
    Q.calibrate(qat, batches, progress=False)
    qmodel = assert_qfloat_equals_q(qat, megq.Tensor(batches[0]))
    assert type(qmodel[5].module) is M.Linear and isinstance(qmodel[5].quant, QM.QuantStub)
    # the skipped Linear computes in float on the dequantized int8 input (oracle: numpy)
    seen = {}
    qmodel[5].module.register_forward_hook(lambda m, i, o: seen.update(x=i[0].numpy(), y=o.numpy()))
    with no_grad():
        qmodel(megq.Tensor(batches[0]))
    lin = net[5]
    np.testing.assert_allclose(seen["y"], seen["x"] @ lin.weight.numpy().T + lin.bias.numpy(), rtol=1e-5,
                               atol=1e-5)
    # save / load round trip of the Q model keeps the islands
    path = tmp_path / "q.megq"
    megq.save(qmodel, str(path))
    back = megq.load(str(path))
    with no_grad():
        np.testing.assert_array_equal(back.eval()(megq.Tensor(batches[1])).numpy(),
                                      qmodel(megq.Tensor(batches[1])).numpy())


def test_skip_arguments():
    rng = np.random.default_rng(1)
    net = net_with_sigmoid(rng)
    with pytest.raises(ValueError, match="no sub-module named 'fc'"):
        Q.quantize_qat(net, inplace=False, skip=["fc"])
    with pytest.raises(TypeError, match="skip must be a list"):
        Q.quantize_qat(net, inplace=False, skip="5")
    with pytest.raises(TypeError, match="skip entries must be str"):
        Q.quantize_qat(net, inplace=False, skip=[5])
    # nested names: the outer one wins; the model passed is untouched with inplace=False
    qat = Q.quantize_qat(net, inplace=False, skip=["1", "1.conv"])
    assert isinstance(qat[1], FloatIsland) and type(qat[1].module) is M.ConvBnRelu2d
    assert type(net[1]) is M.ConvBnRelu2d
