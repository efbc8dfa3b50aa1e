"""MegEngine's documented spellings run unchanged with ``megq`` in place of ``megengine``."""
from __future__ import annotations

import numpy as np
import pytest

import megq
import megq.functional as F
import megq.optimizer as optim
import megq.quantization as Q
from megq import models


def test_quantize_qat_qconfig_positional_and_quantize_import():
    from megq.quantization.quantize import quantize, quantize_qat

    net = models.resnet8(num_classes=3, in_channels=1)
    qat = quantize_qat(net, Q.ema_fakequant_qconfig)
    assert qat is net  # inplace stays True
    assert all(type(m.act_observer).__name__ == "ExponentialMovingAverageObserver"
               for m in qat.modules() if isinstance(m, megq.module.qat.QATModule) and m.with_act)
    assert callable(quantize)
    with pytest.raises(TypeError, match="inplace"):
        quantize_qat(models.resnet8(3, 1), "yes")


def test_megq_tensor_is_callable_and_still_the_module():
    t = megq.tensor([1, 2, 3], dtype="float32")
    assert isinstance(t, megq.Tensor) and t.dtype == np.float32 and np.array_equal(t.numpy(), [1, 2, 3])
    assert megq.tensor.Tensor is megq.Tensor


def _ce_oracle(z, y, eps):
    z = z.astype(np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    q = np.full(z.shape, eps / z.shape[1])
    q[np.arange(len(y)), y] += 1 - eps
    return float(-(q * logp).sum(1).mean())


def test_f_nn_cross_entropy_label_smooth():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 4)).astype(np.float32)
    y = np.array([0, 3, 1, 2, 3], np.int32)
    got = F.nn.cross_entropy(megq.tensor(z), megq.tensor(y), label_smooth=0.1).item()
    assert got == pytest.approx(_ce_oracle(z, y, 0.1), rel=1e-5)
    assert F.nn.cross_entropy(megq.tensor(z), megq.tensor(y), label_smoothing=0.1).item() == got
    with pytest.raises(TypeError, match="not both"):
        F.nn.cross_entropy(megq.tensor(z), megq.tensor(y), label_smoothing=0.1, label_smooth=0.2)


def test_topk():
    x = np.array([[3.0, 1.0, 2.0, 1.0], [0.0, 5.0, 4.0, 6.0]], np.float32)
    v, i = F.topk(megq.tensor(x), 2)  # MegEngine's default: the smallest, ascending
    assert np.array_equal(i.numpy(), [[1, 3], [0, 2]]) and np.array_equal(v.numpy(), [[1, 1], [0, 4]])
    v, i = F.topk(megq.tensor(x), 3, descending=True)
    assert np.array_equal(i.numpy(), [[0, 2, 1], [3, 1, 2]]) and np.array_equal(v.numpy(), [[3, 2, 1], [6, 5, 4]])
    v, i = F.topk(megq.tensor(x), 2, descending=True, kth_only=True)
    assert np.array_equal(v.numpy(), [2, 5]) and np.array_equal(i.numpy(), [2, 1])
    with pytest.raises(ValueError, match="k must"):
        F.topk(megq.tensor(x), 5)
    p = megq.Parameter(x)
    gm = megq.autodiff.GradManager().attach([p])
    with gm:
        v, _ = F.topk(p, 2, descending=True)
        gm.backward(F.sum(v))
    assert np.array_equal(p.grad.numpy(), [[1, 0, 1, 0], [0, 1, 0, 1]])


def test_parameters_requires_grad_and_single_group_dict():
    net = models.resnet8(num_classes=3, in_channels=1)
    assert list(net.parameters(requires_grad=True)) == list(net.parameters())
    w = megq.Parameter(np.array([1.0, -2.0], np.float32))
    opt = optim.SGD({"params": [w], "lr": 0.5}, lr=0.1, momentum=0.9)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == 0.5
    w.grad = megq.tensor([1.0, 1.0])
    opt.step()
    assert np.array_equal(w.numpy(), np.array([1.0, -2.0], np.float32) - np.float32(0.5))
    with pytest.raises(TypeError, match="params"):
        optim.SGD([{"lr": 0.1}], lr=0.1)


def test_dict_checkpoint_with_optimizer_state(tmp_path):
    net = models.resnet8(num_classes=3, in_channels=1)
    opt = optim.SGD(net.parameters(requires_grad=True), lr=0.1, momentum=0.9)
    for p in net.parameters():
        p.grad = megq.tensor(np.ones(p.shape, np.float32))
    opt.step()
    megq.save({"epoch": 3, "state_dict": net.state_dict(), "optimizer": opt.state_dict()}, str(tmp_path / "c.megq"))
    ck = megq.load(str(tmp_path / "c.megq"))
    net2 = models.resnet8(num_classes=3, in_channels=1)
    net2.load_state_dict(ck["state_dict"])
    opt2 = optim.SGD(net2.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(ck["optimizer"])
    assert ck["epoch"] == 3
    assert all(np.array_equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))
