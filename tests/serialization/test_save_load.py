"""megq.save / megq.load: round trips of float, QFloat and Q models; hostile or broken files give
ValueError and never execute code; saving is atomic."""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

import megq
import megq.module as M
from megq import models
from megq.autodiff import no_grad


def small_net():
    return M.Sequential(M.QuantStub(), M.ConvBnRelu2d(1, 4, 3, padding=1), M.AdaptiveAvgPool2d(1), M.Flatten(),
                        M.Linear(4, 3), M.DequantStub())


def test_float_model_round_trip(tmp_path):
    net = models.resnet8(in_channels=1).eval()
    x = megq.Tensor(np.random.default_rng(0).standard_normal((2, 1, 12, 12)).astype(np.float32))
    path = tmp_path / "r8.megq"
    megq.save(net, path)
    back = megq.load(path)
    assert type(back) is type(net)
    assert back.state_dict().keys() == net.state_dict().keys()
    with no_grad():
        np.testing.assert_array_equal(back(x).numpy(), net(x).numpy())


def test_shared_modules_and_parameters_stay_shared(tmp_path):
    conv = M.Conv2d(1, 1, 1)
    net = M.Sequential(conv, conv)
    megq.save(net, tmp_path / "s.megq")
    back = megq.load(tmp_path / "s.megq")
    children = [m for _, m in back.named_children()]
    assert children[0] is children[1]


def test_q_model_round_trip_is_bit_identical(tmp_path):
    import megq.quantization as Q

    rng = np.random.default_rng(1)
    qnet = Q.quantize_qat(small_net(), inplace=False, qconfig=Q.ema_fakequant_qconfig_per_channel_quint8)
    Q.disable_fake_quant(qnet)
    with no_grad():
        qnet(megq.Tensor(rng.standard_normal((4, 1, 6, 6)).astype(np.float32)))
    Q.enable_fake_quant(qnet)
    qmodel = Q.quantize(qnet.eval(), inplace=False).eval()
    x = megq.Tensor(rng.standard_normal((3, 1, 6, 6)).astype(np.float32))
    want = qmodel(x).numpy()  # also fills the packed-weight cache, which must not be saved
    megq.save(qmodel, tmp_path / "q.megq")
    with zipfile.ZipFile(tmp_path / "q.megq") as z:
        assert "_packed" not in z.read("manifest.json").decode()
    back = megq.load(tmp_path / "q.megq")
    np.testing.assert_array_equal(back(x).numpy(), want)
    # The QFloat model itself (observers, fake quants, dtype metadata) round-trips too.
    megq.save(qnet, tmp_path / "qf.megq")
    qf = megq.load(tmp_path / "qf.megq")
    with no_grad():
        np.testing.assert_array_equal(qf(x).numpy(), qnet(x).numpy())


def _write(path, manifest, arrays=None, raw_manifest=None):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.json", raw_manifest if raw_manifest is not None else json.dumps(manifest))
        for name, arr in (arrays or {}).items():
            buf = io.BytesIO()
            np.save(buf, arr)
            z.writestr(name + ".npy", buf.getvalue())


def _manifest(root, nodes):
    return {"format": "megq-model", "version": 1, "root": root, "nodes": nodes}


@pytest.mark.parametrize("make,match", [
    (lambda p: p.write_bytes(b"not a zip"), "not a megq model file \\(not a zip"),
    (lambda p: zipfile.ZipFile(p, "w").close(), "no manifest"),
    (lambda p: _write(p, None, raw_manifest=b"{oops"), "manifest is not JSON"),
    (lambda p: _write(p, {"format": "other"}), "is not a megq model file"),
    (lambda p: _write(p, {"format": "megq-model", "version": 99}), "unsupported megq file version 99"),
    (lambda p: _write(p, _manifest({"ref": 0}, [{"kind": "object", "class": "os:system", "attrs": {}}])),
     "neither part of megq nor registered"),
    (lambda p: _write(p, _manifest({"ref": 0}, [{"kind": "object", "class": "builtins:eval", "attrs": {}}])),
     "neither part of megq nor registered"),
    (lambda p: _write(p, _manifest({"ref": 0}, [{"kind": "object", "class": "megq.serialization:load",
                                                 "attrs": {}}])), "is not a class"),
    (lambda p: _write(p, _manifest({"ref": 0}, [{"kind": "object", "class": "numpy:ndarray", "attrs": {}}])),
     "neither part of megq nor registered"),
    (lambda p: _write(p, _manifest({"ref": 0}, [{"kind": "tensor", "array": "a0"}])), "array a0 is missing"),
    (lambda p: _write(p, _manifest({"ref": 5}, [])), "unknown value kind|malformed"),
    (lambda p: _write(p, _manifest({"ref": 0}, [{"kind": "object", "class": "megq.module.container:Sequential",
                                                 "attrs": {"__class__": None}}])), "attribute name"),
    (lambda p: _write(p, _manifest({"pickle": "x"}, [])), "unknown value kind 'pickle'"),
])
def test_hostile_or_broken_files_raise_value_error(tmp_path, make, match):
    path = tmp_path / "bad.megq"
    make(path)
    with pytest.raises(ValueError, match=match):
        megq.load(path)


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "pickled.megq"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.json", json.dumps(_manifest({"ref": 0}, [{"kind": "tensor", "array": "a0"}])))
        buf = io.BytesIO()
        np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
        z.writestr("a0.npy", buf.getvalue())
    with pytest.raises(ValueError, match="pickle"):
        megq.load(path)


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="path: no such file"):
        megq.load(tmp_path / "nope.megq")
    with pytest.raises(TypeError, match="module: expected a megq Module"):
        megq.save({"a": 1}, tmp_path / "x.megq")


def test_failed_save_leaves_the_old_file_untouched(tmp_path):
    path = tmp_path / "model.megq"
    megq.save(small_net(), path)
    before = path.read_bytes()
    bad = small_net()
    bad.hook = open  # a builtin function: not plain data, cannot be saved safely
    bad.unsaveable = object()
    with pytest.raises(TypeError, match="cannot save a value of type builtins.object"):
        megq.save(bad, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.megq"]  # no temporary file left behind


def test_registered_user_classes_load(tmp_path):
    @megq.register_serializable
    class Block(M.Module):
        def __init__(self):
            super().__init__()
            self.conv = M.Conv2d(1, 1, 1)

        def forward(self, x):
            return self.conv(x)

    megq.save(Block(), tmp_path / "b.megq")
    assert isinstance(megq.load(tmp_path / "b.megq"), Block)
    os.remove(tmp_path / "b.megq")
