"""megq.save / megq.load: round trips of float, QFloat and Q models (bit-identical outputs), version-1 files, and
the basic refusals (not a zip, no manifest, bad JSON, unknown classes, pickled arrays)."""
from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from megq_file_helpers import make_small_net, manifest_v1, manifest_v2, npy_bytes, write_raw

import megq
import megq.module as M
from megq import models
from megq.autodiff import no_grad


def small_net():
    return make_small_net()


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
        manifest = z.read("manifest.json").decode()
    assert "_packed" not in manifest
    for m in qmodel.modules():  # every class's transient attributes (kernel caches) are left out
        for name in getattr(type(m), "_transient_attrs", ()):
            assert f'"{name}"' not in manifest
    back = megq.load(tmp_path / "q.megq")
    np.testing.assert_array_equal(back(x).numpy(), want)
    # The QFloat model itself (observers, fake quants, dtype metadata) round-trips too.
    megq.save(qnet, tmp_path / "qf.megq")
    qf = megq.load(tmp_path / "qf.megq")
    with no_grad():
        np.testing.assert_array_equal(qf(x).numpy(), qnet(x).numpy())


@pytest.mark.parametrize("make,match", [
    (lambda p: p.write_bytes(b"not a zip"), "not a megq model file \\(not a zip"),
    (lambda p: zipfile.ZipFile(p, "w").close(), "no manifest"),
    (lambda p: write_raw(p, None, raw_manifest=b"{oops"), "manifest is not JSON"),
    (lambda p: write_raw(p, None, raw_manifest=b"\xff\xfe"), "manifest is not UTF-8"),
    (lambda p: write_raw(p, {"format": "other"}), "not a megq model file"),
    (lambda p: write_raw(p, {"format": "megq-model", "version": 99}), "unsupported megq file version 99"),
    (lambda p: write_raw(p, manifest_v2({"ref": 0}, [{"kind": "object", "class": "os:system", "attrs": {}}])),
     "class 'os:system' is not in megq's registry"),
    (lambda p: write_raw(p, manifest_v1({"ref": 0}, [{"kind": "object", "class": "builtins:eval", "attrs": {}}])),
     "class 'builtins:eval' is not in megq's registry"),
    (lambda p: write_raw(p, manifest_v1({"ref": 0}, [{"kind": "object", "class": "megq.serialization:load",
                                                      "attrs": {}}])), "not in megq's registry"),
    (lambda p: write_raw(p, manifest_v2({"ref": 0}, [{"kind": "object", "class": "numpy:ndarray", "attrs": {}}])),
     "not in megq's registry"),
    (lambda p: write_raw(p, manifest_v2({"ref": 0}, [{"kind": "tensor", "array": "a0"}])),
     "array a0 is not in the manifest's array table"),
    (lambda p: write_raw(p, manifest_v1({"ref": 0}, [{"kind": "tensor", "array": "a0"}])), "array a0 is missing"),
    (lambda p: write_raw(p, manifest_v2({"ref": 5}, [])), "reference to node 5, the file has 0"),
    (lambda p: write_raw(p, manifest_v2({"ref": 0}, [{"kind": "object", "class": "megq.module.Sequential",
                                                      "attrs": {"__class__": None}}])), "attribute '__class__'"),
    (lambda p: write_raw(p, manifest_v2({"pickle": "x"}, [])), "unknown value kind 'pickle'"),
])
def test_hostile_or_broken_files_raise_serialization_error(tmp_path, make, match):
    path = tmp_path / "bad.megq"
    make(path)
    with pytest.raises(megq.SerializationError, match=match):
        megq.load(path)


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "pickled.megq"
    evil = npy_bytes(np.array([{"evil": 1}], dtype=object))
    write_raw(path, manifest_v1({"ref": 0}, [{"kind": "tensor", "array": "a0"}]), {"a0": evil})
    with pytest.raises(megq.SerializationError, match="pickle"):
        megq.load(path)


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="path: no such file"):
        megq.load(tmp_path / "nope.megq")
    with pytest.raises(TypeError, match="limits: expected a megq.serialization.Limits"):
        megq.load(tmp_path / "nope.megq", limits={"max_depth": 3})
    with pytest.raises(TypeError, match="path: expected a str or os.PathLike"):
        megq.save(small_net(), 3)
    with pytest.raises(ValueError, match="Limits.max_depth: expected a positive number"):
        megq.serialization.Limits(max_depth=0)


def test_failed_save_leaves_the_old_file_untouched(tmp_path):
    path = tmp_path / "model.megq"
    megq.save(small_net(), path)
    before = path.read_bytes()
    bad = small_net()
    bad.unsaveable = object()
    with pytest.raises(TypeError, match="obj.unsaveable: cannot save a value of type builtins.object"):
        megq.save(bad, path)
    bad = small_net()
    bad.hook = open  # a builtin function: not plain data, cannot be saved safely
    with pytest.raises(TypeError, match="obj.hook: cannot save a value of type builtins.builtin_function"):
        megq.save(bad, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.megq"]  # no temporary file left behind


def test_unregistered_module_class_is_refused_at_save(tmp_path):
    class Private(M.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="obj.0: module class .*Private is not registered"):
        megq.save(M.Sequential(Private()), tmp_path / "p.megq")
    assert list(tmp_path.iterdir()) == []


def test_saving_is_deterministic(tmp_path):
    net = small_net()
    megq.save(net, tmp_path / "a.megq")
    megq.save(net, tmp_path / "b.megq")
    assert (tmp_path / "a.megq").read_bytes() == (tmp_path / "b.megq").read_bytes()


def test_version_1_files_load_through_the_registry(tmp_path):
    """A file as megq 0.1 wrote it (class paths "module:qualname", deflated arrays) still loads, faithfully."""
    w = np.arange(4, dtype=np.float32).reshape(1, 4) / 7
    b = np.array([0.5], np.float32)
    nodes = [{"kind": "object", "class": "megq.module.linear:Linear",
              "attrs": {"training": False, "quantize_disabled": False, "name": None, "_hook_counter": {"int": 0},
                        "in_features": {"int": 4}, "out_features": {"int": 1}, "weight": {"ref": 1},
                        "bias": {"ref": 2}}},
             {"kind": "parameter", "array": "a0"}, {"kind": "parameter", "array": "a1"}]
    write_raw(tmp_path / "v1.megq", manifest_v1({"ref": 0}, nodes), {"a0": w, "a1": b},
              compression=zipfile.ZIP_DEFLATED)
    back = megq.load(tmp_path / "v1.megq")
    assert type(back) is M.Linear and back.training is False
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(back(megq.Tensor(x)).numpy(), x @ w.T + b)


def test_version_1_root_must_be_a_module(tmp_path):
    write_raw(tmp_path / "v1.megq", manifest_v1({"list": []}))
    with pytest.raises(megq.SerializationError, match="root is not a module"):
        megq.load(tmp_path / "v1.megq")


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
