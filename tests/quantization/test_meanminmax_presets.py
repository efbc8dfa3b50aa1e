"""The mean min/max presets by name: exported, in PRESETS, reachable from ``megq calibrate --qconfig`` with the
algorithm options, and the command's Q model equals the Python recipe's bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

import megq
import megq.quantization as Q
from megq.autodiff import no_grad
from megq.quantization.utils import QuantMode


@pytest.mark.parametrize("name, per_channel", [("calibration_qconfig_meanminmax_per_channel", True),
                                               ("calibration_qconfig_meanminmax", False)])
def test_presets_are_exported_with_their_observers(name, per_channel):
    qc = Q.PRESETS[name]
    assert getattr(Q, name) is qc and name in Q.__all__
    w, a = qc.weight_observer(), qc.act_observer()
    assert isinstance(w, Q.PerChannelMinMaxObserver) == per_channel and isinstance(w, Q.MinMaxObserver)
    assert type(a) is Q.MeanMinMaxObserver and a.mode == QuantMode.ASYMMERTIC and a.dtype.name == "quint8"
    assert qc.weight_fake_quant is None and qc.act_fake_quant is None  # a calibration preset: observers only


def test_megq_calibrate_with_the_preset_and_options_equals_the_python_recipe(tmp_path):
    pytest.importorskip("PIL.Image")
    from copy import deepcopy

    from workflow.test_commands import _folder

    from megq import cli, workflow
    from megq import data as D

    data = _folder(tmp_path / "images")
    f, q = str(tmp_path / "float.megq"), str(tmp_path / "q.megq")
    assert cli.main(["train", "--data", data, "--epochs", "1", "--image-size", "12", "--batch-size", "8", "--out",
                     f, "--quiet", "--threads", "1"]) == 0
    options = ["--option", "ends_minmax", "--option", 'equalize_activations={"linear": true}',
               "--option", "weight_rounding"]
    assert cli.main(["calibrate", "--data", data, "--checkpoint", f, "--out", q, "--num-batches", "2",
                     "--batch-size", "4", "--quiet", "--qconfig", "calibration_qconfig_meanminmax_per_channel",
                     *options]) == 0
    ck = megq.load(q)
    assert ck["qconfig"] == "calibration_qconfig_meanminmax_per_channel"
    # the same recipe in Python, on the batches the command draws (its loader: shuffled with seed 0)
    fl = megq.load(f)
    meta = fl["meta"]
    ds = workflow.load_data(data, meta["image_size"][0], False)
    loader = D.DataLoader(ds.train, 4, shuffle=True, seed=0, transform=workflow._normalize(meta))
    qat = Q.quantize_qat(deepcopy(fl["model"]), Q.calibration_qconfig_meanminmax_per_channel)
    Q.calibrate(qat, loader, num_batches=2, progress=False, ends_minmax=True,
                equalize_activations={"linear": True}, weight_rounding=True)
    x = np.concatenate([np.asarray(b[0], np.float32) for _, b in zip(range(2), workflow._loader(
        ds.val, meta, 4, False, 0))])
    with no_grad():
        got = ck["q"].eval()(megq.Tensor(x)).numpy()
        want = Q.quantize(qat, inplace=False).eval()(megq.Tensor(x)).numpy()
        qfloat = ck["qfloat"].eval()(megq.Tensor(x)).numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, qfloat)
    # and the options mattered: the preset without them gives another model
    plain = Q.quantize_qat(deepcopy(fl["model"]), Q.calibration_qconfig_meanminmax_per_channel)
    Q.calibrate(plain, loader, num_batches=2, progress=False)
    with no_grad():
        assert not np.array_equal(Q.quantize(plain, inplace=False).eval()(megq.Tensor(x)).numpy(), got)
