"""sensitivity(): every row against a numpy oracle of the fake-quantized network, a deliberately broken quantizer
ranked first, the model left as it was, table/JSON outputs, bad arguments."""
from __future__ import annotations

import json

import numpy as np
import pytest
from quantization.test_compare import small_net  # the same 4-layer conv net compare() is tested on

import megq
import megq.module as M
import megq.quantization as Q
from megq.autodiff import no_grad


def _fake_quant(x: np.ndarray, qp, axis: int = 0) -> np.ndarray:
    """Oracle: q = clamp(round_half_away(x / s) + zp, qmin, qmax), back to (q - zp) * s; float32 like the model."""
    s = np.asarray(qp.scale, np.float32)
    zp = np.zeros_like(s, np.float32) if qp.zero_point is None else np.asarray(qp.zero_point, np.float32)
    if s.ndim:
        shape = [1] * x.ndim
        shape[axis] = -1
        s, zp = s.reshape(shape), zp.reshape(shape)
    v = (x.astype(np.float32) / s).astype(np.float32)
    r = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
    q = np.clip(r + zp, qp.dtype_meta.qmin, qp.dtype_meta.qmax)
    return ((q - zp) * s).astype(np.float32)


def _scores(f: np.ndarray, q: np.ndarray):
    f, q = f.astype(np.float64), q.astype(np.float64)
    cos = ((f * q).sum(1) / np.sqrt((f * f).sum(1) * (q * q).sum(1))).mean()
    return cos, 10 * np.log10((f * f).sum() / ((q - f) ** 2).sum())


def test_rows_match_a_numpy_oracle():
    rng = np.random.default_rng(0)
    net = M.Sequential(M.QuantStub(), M.Linear(12, 7, bias=False), M.DequantStub()).eval()
    batches = [rng.standard_normal((8, 12)).astype(np.float32) for _ in range(3)]
    qat = Q.calibrate(Q.quantize_qat(net, inplace=False, qconfig=Q.calibration_qconfig_per_channel), batches,
                      progress=False)
    report = Q.sensitivity(net, qat, batches)
    w = np.asarray(net[1].weight.numpy(), np.float32)
    qp_in, qp_out = qat[0].get_activation_qparams(), qat[1].get_activation_qparams()
    wq = _fake_quant(w, qat[1].get_weight_qparams(), axis=0)
    x = np.concatenate(batches)
    fin = _fake_quant(x, qp_in)
    ref = x @ w.T
    expect = {
        "<quantized>": _fake_quant(fin @ wq.T, qp_out),
        "0": _fake_quant(x @ wq.T, qp_out),                    # input stub off
        "1": fin @ wq.T,                                        # the linear layer's output grid off
        "<all weights float>": _fake_quant(fin @ w.T, qp_out),
        "<all activations float>": x @ wq.T,
    }
    rows = {r.name: r for r in report.quantizers + [report.baseline, report.weights_float,
                                                     report.activations_float]}
    assert sorted(r.name for r in report.quantizers) == ["0", "1"]
    base_cos, base_sqnr = _scores(ref, expect["<quantized>"])
    for name, out in expect.items():
        cos, sqnr = _scores(ref, out)
        assert rows[name].cosine == pytest.approx(cos, abs=2e-6), name
        assert rows[name].sqnr_db == pytest.approx(sqnr, abs=2e-3), name
        assert rows[name].cosine_gain == pytest.approx(cos - base_cos, abs=4e-6), name
        assert rows[name].sqnr_gain_db == pytest.approx(sqnr - base_sqnr, abs=4e-3), name
    # worst first
    gains = [r.cosine_gain for r in report.quantizers]
    assert gains == sorted(gains, reverse=True)


def _broken(rng):
    megq.random.seed(int(rng.integers(1 << 30)))  # the layers' initial weights: independent of earlier tests
    net = small_net(rng)
    batches = [rng.standard_normal((4, 3, 6, 6)).astype(np.float32) for _ in range(2)]
    qat = Q.calibrate(Q.quantize_qat(net, inplace=False, qconfig=Q.calibration_qconfig_per_channel), batches,
                      progress=False)
    ob = qat[2].act_observer  # layer "2": an int8 output grid 32x too coarse
    qp = ob.get_qparams()
    ob.set_qparams(Q.QParams(qp.mode, qp.dtype_meta, np.float32(qp.scale * 32), qp.zero_point))
    return net, qat, batches


def test_broken_quantizer_ranked_first_and_model_left_as_it_was():
    net, qat, batches = _broken(np.random.default_rng(1))
    with no_grad():
        before = [qat(megq.Tensor(x)).numpy() for x in batches]
    flags = [(o, o.enabled) for m in qat.modules() for o in (getattr(m, "act_fake_quant", None),
                                                             getattr(m, "weight_fake_quant", None),
                                                             getattr(m, "act_observer", None)) if o is not None]
    report = Q.sensitivity(net, qat, batches)
    assert report.quantizers[0].name == "2"
    assert report.quantizers[0].cosine_gain > 3 * max(r.cosine_gain for r in report.quantizers[1:])
    assert report.activations_float.cosine_gain > report.quantizers[0].cosine_gain * 0.5
    assert all((o.enabled == e) for o, e in flags)
    assert not qat.training
    with no_grad():
        after = [qat(megq.Tensor(x)).numpy() for x in batches]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    # the baseline is the QFloat model's score: the Q model predicts the same values
    qm = Q.quantize(qat, inplace=False).eval()
    with no_grad():
        yq = np.concatenate([qm(megq.Tensor(x)).numpy() for x in batches])
        yf = np.concatenate([net(megq.Tensor(x)).numpy() for x in batches])
    assert report.baseline.cosine == pytest.approx(_scores(yf, yq)[0], abs=1e-5)


def test_table_and_json():
    net, qat, batches = _broken(np.random.default_rng(2))
    report = Q.sensitivity(net, qat, batches, num_batches=1)
    assert report.num_batches == 1
    text = report.table(limit=2)
    assert text.splitlines()[2].startswith("| 2 |")
    assert "<all weights float>" in text and "<all activations float>" in text and "<quantized>" in text
    d = json.loads(report.to_json())
    assert d["quantizers"][0]["name"] == "2" and d["num_batches"] == 1
    assert d["baseline"]["cosine_gain"] == 0.0
    assert str(report) == report.table()


def test_bad_arguments():
    rng = np.random.default_rng(3)
    net, qat, batches = _broken(rng)
    with pytest.raises(TypeError, match="float_model"):
        Q.sensitivity("net", qat, batches)
    with pytest.raises(TypeError, match="qfloat_model"):
        Q.sensitivity(net, 3, batches)
    with pytest.raises(ValueError, match="same object"):
        Q.sensitivity(qat, qat, batches)
    with pytest.raises(TypeError, match="no QAT modules"):
        Q.sensitivity(net, Q.quantize(qat, inplace=False), batches)
    with pytest.raises(TypeError, match="no QAT modules"):
        Q.sensitivity(net, small_net(rng), batches)
    with pytest.raises(ValueError, match="empty"):
        Q.sensitivity(net, qat, [])
    with pytest.raises(ValueError, match="calibrate it first"):  # a calibration preset gets its fake quants there
        Q.sensitivity(net, Q.quantize_qat(net, inplace=False, qconfig=Q.calibration_qconfig_per_channel), batches)
    with pytest.raises(ValueError, match="calibrated"):  # fake quants, but observers that saw no data
        Q.sensitivity(net, Q.quantize_qat(net, inplace=False, qconfig=Q.ema_fakequant_qconfig), batches)
