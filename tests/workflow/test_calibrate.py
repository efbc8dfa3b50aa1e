"""megq.quantization.calibrate for every preset, and the kernels-backed QFloat eval (== Q, == reference)."""
from __future__ import annotations

import numpy as np
import pytest

import megq
import megq.quantization as Q
from megq import models
from megq.autodiff import no_grad
from megq.quantization.observer import PassiveObserver

SKIP = {"tqt_qconfig", "passive_qconfig", "easyquant_qconfig"}  # no observers: nothing to calibrate
PRESETS = sorted(n for n in Q.PRESETS if n not in SKIP)
RNG = np.random.default_rng(0)
BATCHES = [RNG.standard_normal((8, 1, 12, 12)).astype(np.float32) for _ in range(3)]
X = RNG.standard_normal((6, 1, 12, 12)).astype(np.float32)


def _net():
    megq.random.seed(0)
    net = models.resnet8(num_classes=5, in_channels=1)
    # non-trivial BN statistics, so a calibration that ran in train mode (batch statistics) would show
    for m in net.modules():
        if isinstance(m, megq.module.BatchNorm2d):
            m.running_mean.set_value(RNG.normal(0, 0.1, m.running_mean.shape).astype(np.float32))
            m.running_var.set_value(RNG.uniform(0.5, 2, m.running_var.shape).astype(np.float32))
    return net


def _run(model, x=X):
    with no_grad():
        return model(megq.Tensor(x)).numpy()


@pytest.mark.parametrize("preset", PRESETS)
def test_qfloat_eval_equals_q_after_calibrate(preset):
    net = _net()
    bn_before = {k: v.copy() for k, v in net.state_dict().items() if "running" in k}
    qat = Q.quantize_qat(net, Q.PRESETS[preset])  # qconfig positional, as in MegEngine's guide
    assert Q.calibrate(qat, [(b, None) for b in BATCHES], progress=False) is qat
    assert not qat.training
    for k, v in qat.state_dict().items():
        if k in bn_before:
            assert np.array_equal(v, bn_before[k]), f"calibration changed BN statistics {k}"
    for m in qat.modules():
        if isinstance(m, Q.observer.Observer):
            assert isinstance(m, PassiveObserver) or not m.enabled
    q = Q.quantize(qat, inplace=False).eval()
    kernels_out = _run(qat)
    assert np.array_equal(kernels_out, _run(q))
    previous = Q.set_integer_eval_backend("reference")
    try:
        assert np.array_equal(_run(qat), kernels_out)
    finally:
        Q.set_integer_eval_backend(previous)


def test_min_max_ranges_come_from_the_float_activations():
    """Fake quant is off while observing: the QuantStub's range is the input's, the next layer's the float
    conv output's (numpy oracle: max |x| / 127.5, MegEngine's symmetric qint8 rule)."""
    net = _net()
    qat = Q.quantize_qat(net, Q.min_max_fakequant_qconfig)
    Q.calibrate(qat, BATCHES, num_batches=2, progress=False)
    stub_scale = qat.quant.get_activation_qparams().scale
    expected = np.float32(max(np.abs(b).max() for b in BATCHES[:2])) / np.float32(127.5)
    assert np.asarray(stub_scale).reshape(()) == pytest.approx(expected, rel=1e-6)


def test_stale_cache_is_never_served():
    qat = Q.quantize_qat(_net(), Q.ema_fakequant_qconfig_per_channel)
    Q.calibrate(qat, BATCHES, progress=False)
    before = _run(qat)
    w = qat.fc.weight.numpy()
    w += np.float32(0.5)  # in place: same object, new values
    after = _run(qat)
    assert not np.array_equal(before, after)
    assert np.array_equal(after, _run(Q.quantize(qat, inplace=False).eval()))
    Q.calibrate(qat, [b * 3 for b in BATCHES], progress=False)  # new ranges (EMA observers re-enabled)
    assert np.array_equal(_run(qat), _run(Q.quantize(qat, inplace=False).eval()))


def test_bad_arguments():
    qat = Q.quantize_qat(_net(), Q.calibration_qconfig)
    with pytest.raises(ValueError, match="unknown option"):
        Q.calibrate(qat, BATCHES, progress=False, no_such_algorithm=True)
    with pytest.raises(ValueError, match="empty"):
        Q.calibrate(qat, [], progress=False)
    with pytest.raises(ValueError, match="num_batches"):
        Q.calibrate(qat, BATCHES, 0, progress=False)
    with pytest.raises(TypeError, match="quantize_qat"):
        Q.calibrate(_net(), BATCHES, progress=False)
    with pytest.raises(TypeError, match="batch 0"):
        Q.calibrate(qat, ["text"], progress=False)
    with pytest.raises(ValueError, match="backend"):
        Q.set_integer_eval_backend("gpu")


def test_plain_progress_lines(capsys):
    qat = Q.quantize_qat(_net(), Q.calibration_qconfig)
    Q.calibrate(qat, BATCHES, progress=True)
    err = capsys.readouterr().err
    try:
        import tqdm  # noqa: F401
    except ImportError:
        assert "calibrate: 3/3" in err
