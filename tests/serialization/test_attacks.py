"""Files crafted to make the loader do something: every route found in the review (class paths that walk module
globals to tempfile/ctypes/io/zipfile/argparse, importing megq.__main__, shadowing methods or properties, pickled
arrays, path traversal) is refused with SerializationError, imports nothing and touches no file."""
from __future__ import annotations

import json
import sys
import zipfile

import numpy as np
import pytest
from megq_file_helpers import manifest_v1, manifest_v2, npy_bytes, write_raw

import megq
from megq.serialization import registry

# Class paths that reach foreign classes through megq modules' globals (attribute walks) or run code on import.
FOREIGN_PATHS = [
    "megq.serialization:tempfile._TemporaryFileCloser",
    "megq.serialization.atomic:tempfile._TemporaryFileCloser",
    "megq.kernels:ctypes.CDLL",
    "megq.serialization.api:io.FileIO",
    "megq.serialization.api:zipfile.ZipFile",
    "megq.cli:argparse.ArgumentParser",
    "megq.__main__:X",
    "megq.serialization.api:os.system",
    "os:system",
    "builtins:eval",
    "megq.module.module:np.ndarray",
    "megq.serialization.registry:importlib.import_module",
    "megq.module.Conv2d.forward",
    "tempfile._TemporaryFileCloser",
]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("path", FOREIGN_PATHS)
def test_foreign_class_paths_are_refused_without_imports_or_side_effects(tmp_path, version, path):
    victim = tmp_path / "victim.txt"
    victim.write_text("still here")
    node = {"kind": "object", "class": path,
            "attrs": {"file": {"int": 1}, "name": str(victim), "delete": True, "_name": str(victim),
                      "prog": "x", "mode": "r"}}
    make = manifest_v1 if version == 1 else manifest_v2
    write_raw(tmp_path / "evil.megq", make({"ref": 0}, [node]))
    registry.resolve("")  # fill the registry first: its own (fixed) imports are not the file's doing
    before = set(sys.modules)
    with pytest.raises(megq.SerializationError, match="is not in megq's registry"):
        megq.load(tmp_path / "evil.megq")
    # The file caused no import (megq.__main__ would run the CLI); zipfile may import the codec of entry names
    # lazily, which is the standard library's own doing.
    assert {m for m in set(sys.modules) - before if not m.startswith("encodings.")} == set()
    assert victim.read_text() == "still here"


def test_the_reported_tempfile_manifest_deletes_nothing(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("x")
    manifest = {"format": "megq-model", "version": 1, "root": {"ref": 0}, "nodes": [
        {"kind": "object", "class": "megq.serialization:tempfile._TemporaryFileCloser",
         "attrs": {"file": {"int": 1}, "name": str(victim), "delete": True}}]}
    write_raw(tmp_path / "evil.megq", manifest)
    with pytest.raises(megq.SerializationError):
        megq.load(tmp_path / "evil.megq")
    import gc

    gc.collect()
    assert victim.exists()


@pytest.mark.parametrize("key,attr,why", [
    ("megq.module.Sequential", "forward", "defined by class Sequential as function"),
    ("megq.module.Sequential", "__dict__", "not an attribute name megq stores"),
    ("megq.module.Sequential", "__class__", "not an attribute name megq stores"),
    ("megq.module.Sequential", "_forward_hooks", "a transient attribute"),
    ("megq.quantization.MinMaxObserver", "training", "defined by class MinMaxObserver as property"),
    ("megq.quantization.IntegerLayer", "from_qat", "defined by class IntegerLayer as classmethod"),
    ("megq.quantization.QParams", "per_channel", "defined by class QParams as property"),
    ("megq.quantization.QParams", "extra", "not a declared slot of QParams"),
])
def test_attributes_cannot_shadow_behaviour(tmp_path, key, attr, why):
    write_raw(tmp_path / "x.megq", manifest_v2({"ref": 0}, [{"kind": "object", "class": key,
                                                             "attrs": {attr: {"int": 1}}}]))
    with pytest.raises(megq.SerializationError, match=f"node 0 \\({key}\\): attribute '{attr}' is {why}"):
        megq.load(tmp_path / "x.megq")


def test_enums_and_qdtypes_only_from_the_registry(tmp_path):
    write_raw(tmp_path / "e.megq", manifest_v2({"enum": ["signal:Signals", "SIGKILL"]}))
    with pytest.raises(megq.SerializationError, match="unknown enum member"):
        megq.load(tmp_path / "e.megq")
    write_raw(tmp_path / "q.megq", manifest_v2({"qdtype": ["x", None, "object", 0, 1, False]}))
    with pytest.raises(megq.SerializationError, match="malformed quantized dtype"):
        megq.load(tmp_path / "q.megq")
    write_raw(tmp_path / "r.megq", manifest_v2({"qdtype": ["x", None, "int8", 0, 300, False]}))
    with pytest.raises(megq.SerializationError, match="does not fit int8"):
        megq.load(tmp_path / "r.megq")


@pytest.mark.parametrize("dtype", [object, "U3", "S2", "M8[s]", [("a", "<i4")]])
def test_non_numeric_arrays_are_refused(tmp_path, dtype):
    arr = np.array([None], object) if dtype is object else np.zeros(1, dtype)
    write_raw(tmp_path / "x.megq", manifest_v1({"ref": 0}, [{"kind": "tensor", "array": "a0"}]), {"a0": arr})
    with pytest.raises(megq.SerializationError, match="pickle|not a numeric dtype|bad .npy header"):
        megq.load(tmp_path / "x.megq")


def test_path_traversal_entry_names_are_refused_and_never_written(tmp_path):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    with zipfile.ZipFile(work / "x.megq", "w") as z:
        z.writestr("manifest.json", json.dumps(manifest_v1({"ref": 0}, [{"kind": "tensor", "array": "a0"}])))
        z.writestr("../../evil.npy", npy_bytes(np.zeros(1)))
    with pytest.raises(megq.SerializationError, match="unexpected zip entry '../../evil.npy'"):
        megq.load(work / "x.megq")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "x.megq"]


def test_registry_holds_megqs_classes_and_no_foreign_ones():
    import megq.module as M
    import megq.module.qat as QM
    import megq.module.quantized as QQ
    import megq.quantization as Q

    integer_layer = getattr(Q, "IntegerLayer", None) or QQ.IntegerLayer
    for key, cls in [("megq.module.Conv2d", M.Conv2d), ("megq.module.qat.Conv2d", QM.Conv2d),
                     ("megq.module.quantized.Conv2d", QQ.Conv2d), ("megq.quantization.MinMaxObserver",
                                                                     Q.MinMaxObserver),
                     ("megq.quantization.IntegerLayer", integer_layer), ("megq.quantization.QuantMode", Q.QuantMode),
                     ("megq.quantization.TQT", Q.TQT)]:
        assert registry.resolve(key) is cls
        assert registry.key_of(cls) == key
    assert registry.resolve_legacy("megq.module.quantized.params:IntegerLayer") is integer_layer
    for cls in registry._builtin.values():
        assert cls.__module__.startswith("megq."), cls


def test_register_serializable_keys(tmp_path):
    import megq.module as M
    from megq.serialization import register_serializable

    @register_serializable(key="tests.Record")
    class Record:
        def __init__(self, a):
            self.a = a

    megq.save({"r": Record([1, np.float32(2)])}, tmp_path / "r.megq")
    with zipfile.ZipFile(tmp_path / "r.megq") as z:
        assert '"class":"tests.Record"' in z.read("manifest.json").decode()
    back = megq.load(tmp_path / "r.megq")["r"]
    assert type(back) is Record and back.a == [1, np.float32(2)]
    with pytest.raises(ValueError, match="one of megq's own classes"):
        register_serializable(Record, key="megq.module.Conv2d")
    with pytest.raises(ValueError, match="already registered under key 'tests.Record'"):
        register_serializable(Record, key="tests.Other")
    with pytest.raises(TypeError, match="cls: expected a class"):
        register_serializable(3)
    with pytest.raises(TypeError, match="tuple subclass"):
        register_serializable(type("T", (tuple,), {}))
    assert registry.resolve("megq.module.Conv2d") is M.Conv2d
