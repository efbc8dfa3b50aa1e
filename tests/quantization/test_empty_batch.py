"""A Q model (and its QFloat model) called on an empty batch returns an empty output of the right shape, through
every layer kind of the zoo: convs, depthwise convs, residual adds, pooling, flatten, the quantized classifier."""
from __future__ import annotations

import numpy as np
import pytest

import megq
import megq.quantization as Q
from megq import models
from megq.autodiff import no_grad


@pytest.mark.parametrize("arch", ["resnet8", "mobilenet_v2"])
def test_empty_batch_through_q_and_qfloat_models(arch):
    rng = np.random.default_rng(0)
    net = getattr(models, arch)(num_classes=10).eval()
    qat = Q.quantize_qat(net, inplace=False, qconfig=Q.ema_fakequant_qconfig_per_channel_quint8)
    Q.calibrate(qat, [rng.standard_normal((2, 3, 32, 32)).astype(np.float32)], progress=False)
    qmodel = Q.quantize(qat, inplace=False).eval()
    empty = megq.Tensor(np.zeros((0, 3, 32, 32), np.float32))
    with no_grad():
        for model in (qmodel, qat.eval()):
            y = model(empty).numpy()
            assert y.shape == (0, 10) and y.dtype == np.float32
        # and the same model still answers a real batch afterwards (no state broken by the empty call)
        x = megq.Tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
        np.testing.assert_array_equal(qmodel(x).numpy(), qat(x).numpy())
