"""compare(): metrics against a numpy oracle, a deliberately broken layer ranked first (isolated error told apart
from error arriving from upstream), QFloat and Q give the same report, table/JSON/plot outputs, bad arguments."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import megq
import megq.module as M
import megq.quantization as Q
from megq.autodiff import no_grad


def small_net(rng):
    net = M.Sequential(M.QuantStub(), M.ConvBnRelu2d(3, 8, 3, padding=1), M.ConvBnRelu2d(8, 8, 3, padding=1),
                       M.ConvBn2d(8, 8, 3, padding=1), M.ReLU(), M.Flatten(), M.Linear(8 * 6 * 6, 5),
                       M.DequantStub())
    for m in net.modules():
        if isinstance(m, M.BatchNorm2d):
            m.bias.set_value((rng.standard_normal(m.bias.shape) * 0.1).astype(np.float32))
    return net.eval()


def layer_outputs(model, index, batches):
    """Oracle input: the float values of ``model[index]``'s output on each batch, gathered by a forward hook."""
    outs = []
    h = model[index].register_forward_hook(lambda m, i, o: outs.append(
        np.asarray(o.dequantize() if hasattr(o, "dequantize") else o.numpy(), np.float64)))
    try:
        with no_grad():
            for x in batches:
                model(megq.Tensor(x))
    finally:
        h.remove()
    return outs


def calibrated(net, batches, **kw):
    qat = Q.quantize_qat(net, inplace=False, qconfig=Q.calibration_qconfig_per_channel, **kw)
    return Q.calibrate(qat, batches, progress=False)


def test_broken_layer_is_ranked_first_and_metrics_match_an_oracle():
    rng = np.random.default_rng(0)
    net = small_net(rng)
    batches = [rng.standard_normal((4, 3, 6, 6)).astype(np.float32) for _ in range(2)]
    qat = calibrated(net, batches)
    # break layer "2": its int8 output grid is 16x too coarse (the weights are untouched)
    ob = qat[2].act_observer
    ob.set_qparams(Q.QParams(ob.get_qparams().mode, ob.get_qparams().dtype_meta,
                             np.float32(ob.get_qparams().scale * 16), ob.get_qparams().zero_point))
    report = Q.compare(net, qat, batches)
    assert report.layers[0].name == "2"
    by = {r.name: r for r in report.layers}
    # downstream layer "3" has a bad end-to-end SQNR (inherited) but a good isolated one: told apart
    assert by["3"].sqnr_db < by["3"].isolated_sqnr_db - 6
    assert by["2"].isolated_sqnr_db < by["3"].isolated_sqnr_db
    # oracle for layer "1": the float and quantized outputs of the layer, gathered by hooks
    outs = {"f": layer_outputs(net, 1, batches), "q": layer_outputs(qat, 1, batches)}
    f = np.concatenate([a.ravel() for a in outs["f"]])
    q = np.concatenate([a.ravel() for a in outs["q"]])
    assert by["1"].sqnr_db == pytest.approx(10 * np.log10((f ** 2).sum() / ((q - f) ** 2).sum()), rel=1e-9)
    assert by["1"].cosine == pytest.approx(f @ q / np.sqrt((f @ f) * (q @ q)), rel=1e-9)
    assert by["1"].max_abs == pytest.approx(np.abs(q - f).max(), rel=1e-12)
    # the QuantStub gets the same float input either way: isolated == end to end
    assert by["0"].isolated_sqnr_db == pytest.approx(by["0"].sqnr_db, rel=1e-9)


def test_qfloat_and_q_give_the_same_report():
    rng = np.random.default_rng(1)
    net = small_net(rng)
    batches = [rng.standard_normal((3, 3, 6, 6)).astype(np.float32)]
    qat = calibrated(net, batches)
    qmodel = Q.quantize(qat, inplace=False).eval()
    a, b = Q.compare(net, qat, batches), Q.compare(net, qmodel, batches)
    assert [r.name for r in a.layers] == [r.name for r in b.layers]
    for ra, rb in zip(a.layers + [a.output], b.layers + [b.output]):
        assert ra.sqnr_db == rb.sqnr_db and ra.isolated_sqnr_db == rb.isolated_sqnr_db
        assert ra.max_abs == rb.max_abs


def test_outputs_table_json_plot(tmp_path):
    rng = np.random.default_rng(2)
    net = small_net(rng)
    batches = [rng.standard_normal((2, 3, 6, 6)).astype(np.float32)]
    report = Q.compare(net, calibrated(net, batches), batches)
    table = report.table()
    assert table.splitlines()[0].startswith("| layer | kind | SQNR dB")
    assert len(table.splitlines()) == 2 + len(report.layers) + 1 and "<output>" in table.splitlines()[-1]
    d = json.loads(report.to_json())
    assert [r["name"] for r in d["layers"]] == [r.name for r in report.layers]
    assert all(math.isfinite(r["sqnr_db"]) for r in d["layers"])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="needs matplotlib"):
            report.plot(str(tmp_path / "x.png"))
    else:
        path = report.plot(str(tmp_path / "x.png"))
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_compare_arguments():
    rng = np.random.default_rng(3)
    net = small_net(rng)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    with pytest.raises(TypeError, match="quantized_model must be a megq Module"):
        Q.compare(net, "q", [x])
    with pytest.raises(ValueError, match="no QAT or quantized layers"):
        Q.compare(net, net, [x])
    with pytest.raises(ValueError, match="batches is empty"):
        Q.compare(net, calibrated(net, [x]), [])


def test_megq_compare_and_skip_commands(tmp_path, capsys):
    """megq calibrate --skip keeps the named layer float (a FloatIsland in the Q model); megq compare prints the
    table and its JSON report equals compare() run on the same checkpoints and batches."""
    pytest.importorskip("PIL.Image")
    from workflow.test_commands import _folder

    from megq import cli, workflow
    from megq.quantization.quantize import FloatIsland

    data = _folder(tmp_path / "images")
    f = str(tmp_path / "float.megq")
    q = str(tmp_path / "q.megq")
    assert cli.main(["train", "--data", data, "--epochs", "1", "--image-size", "12", "--batch-size", "8", "--out",
                     f, "--quiet", "--threads", "1"]) == 0
    assert cli.main(["calibrate", "--data", data, "--checkpoint", f, "--out", q, "--num-batches", "2",
                     "--batch-size", "8", "--quiet", "--skip", "fc", "--option", "bias_correction"]) == 0
    ck = megq.load(q)
    assert isinstance(ck["q"].fc, FloatIsland)
    capsys.readouterr()
    assert cli.main(["compare", "--data", data, "--checkpoint", f, "--quantized", q, "--num-batches", "2",
                     "--batch-size", "4", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("| layer | kind | SQNR dB")
    got = json.loads(out[-1])
    meta = ck["meta"]
    ds = workflow.load_data(data, meta["image_size"][0], False)
    expect = Q.compare(megq.load(f)["model"], ck["q"], workflow._loader(ds.val, meta, 4, False, 0),
                       num_batches=2).to_dict()
    assert [r["name"] for r in got["layers"]] == [r["name"] for r in expect["layers"]]
    assert got["output"]["sqnr_db"] == pytest.approx(expect["output"]["sqnr_db"], rel=1e-12)
    assert not any(r["name"].startswith("fc") for r in got["layers"])  # the float layer is not compared
    # --sensitivity: the report of sensitivity() on the checkpoint's QFloat model, same batches
    assert cli.main(["compare", "--data", data, "--checkpoint", f, "--quantized", q, "--num-batches", "2",
                     "--batch-size", "4", "--json", "--sensitivity"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("| quantizer off |") for line in out)
    got = json.loads(out[-1])["sensitivity"]
    expect = Q.sensitivity(megq.load(f)["model"], megq.load(q)["qfloat"],
                           workflow._loader(ds.val, meta, 4, False, 0), num_batches=2).to_dict()
    assert [r["name"] for r in got["quantizers"]] == [r["name"] for r in expect["quantizers"]]
    assert [r["cosine"] for r in got["quantizers"]] == pytest.approx([r["cosine"] for r in expect["quantizers"]],
                                                                      rel=1e-12)
    # errors name the flag
    assert cli.main(["calibrate", "--data", data, "--checkpoint", f, "--out", q, "--skip", "nope", "--quiet"]) == 2
    assert "--skip" in capsys.readouterr().err
    assert cli.main(["compare", "--data", data, "--checkpoint", q, "--quantized", q]) == 2


def test_equalized_model_is_compared_against_the_equalized_float_path():
    """After equalize_activations the quantized layer's channels are rescaled by c: against the original float
    model that is a huge 'error'; against a QAT twin equalized the same way (run on its float path) the report
    gives the true quantization error, checked against an oracle built from the original float output times c."""
    from functools import partial

    from megq.quantization import ptq
    from megq.quantization.utils import QuantMode

    from .test_ptq_rounding_ranges import relu6_depthwise_net

    rng = np.random.default_rng(5)
    net = relu6_depthwise_net(rng)
    batches = [(rng.standard_normal((4, 3, 6, 6)) * 0.5).astype(np.float32) for _ in range(2)]
    qc = Q.QConfig(partial(Q.PerChannelMinMaxObserver, dtype="qint8_narrow"),
                   partial(Q.MinMaxObserver, mode=QuantMode.ASYMMERTIC, dtype="quint8"), None, None)
    qat = Q.calibrate(Q.quantize_qat(net, inplace=False, qconfig=qc), batches, progress=False,
                      equalize_activations={"max_factor": 1000.0})
    ref = Q.quantize_qat(net, inplace=False, qconfig=qc)
    c = ptq.equalize_activations(ref, batches, max_factor=1000.0)[("1", "2")]
    assert c.max() > 10
    plain = {r.name: r for r in Q.compare(net, qat, batches).layers}
    fair = {r.name: r for r in Q.compare(ref, Q.quantize(qat, inplace=False), batches).layers}
    assert plain["1"].sqnr_db < 0 < 20 < fair["1"].sqnr_db
    outs = {"f": layer_outputs(net, 1, batches), "q": layer_outputs(qat, 1, batches)}
    f = np.concatenate([(a * c.reshape(1, -1, 1, 1)).ravel() for a in outs["f"]])
    q = np.concatenate([a.ravel() for a in outs["q"]])
    assert fair["1"].sqnr_db == pytest.approx(10 * np.log10((f ** 2).sum() / ((q - f) ** 2).sum()), rel=1e-4)
    assert fair["1"].cosine == pytest.approx(f @ q / np.sqrt((f @ f) * (q @ q)), rel=1e-6)
    with pytest.raises(ValueError, match="same object"):
        Q.compare(qat, qat, batches)
