"""One error type: whatever goes wrong inside load (including BaseExceptions such as SystemExit, and MemoryError or
RecursionError) leaves as megq.SerializationError (a ValueError) naming the file; KeyboardInterrupt passes through.
Real malformed files for the exception types the review saw escape: zlib.error, BadZipFile, RecursionError, huge
integers, wrong version and root types."""
from __future__ import annotations

import json
import zipfile
import zlib

import numpy as np
import pytest
from megq_file_helpers import manifest_v1, manifest_v2, write_raw

import megq
from megq.serialization import decode

ESCAPED_BEFORE = [zlib.error("bad"), zipfile.BadZipFile("bad"), RecursionError("deep"), AttributeError("a"),
                  TypeError("t"), MemoryError(), ModuleNotFoundError("m"), KeyError("k"), RuntimeError("r"),
                  NotImplementedError("n"), SystemExit(2), OverflowError("o"), UnicodeDecodeError("utf-8", b"", 0, 1,
                  "x"), EOFError(), OSError("io"), GeneratorExit(), StopIteration()]


@pytest.mark.parametrize("exc", ESCAPED_BEFORE, ids=lambda e: type(e).__name__)
def test_every_exception_inside_load_becomes_serialization_error(tmp_path, monkeypatch, exc):
    megq.save({"a": [1, 2]}, tmp_path / "ok.megq")

    def boom(self, *args, **kwargs):
        raise exc

    monkeypatch.setattr(decode.Reader, "value", boom)
    with pytest.raises(megq.SerializationError, match="path: .*ok.megq") as info:
        megq.load(tmp_path / "ok.megq")
    assert isinstance(info.value, ValueError)


def test_keyboard_interrupt_is_not_swallowed(tmp_path, monkeypatch):
    megq.save({"a": 1}, tmp_path / "ok.megq")

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(decode.Reader, "value", interrupt)
    with pytest.raises(KeyboardInterrupt):
        megq.load(tmp_path / "ok.megq")


def test_corrupt_deflate_stream(tmp_path):
    path = tmp_path / "z.megq"
    write_raw(path, manifest_v2(None, [], {}), compression=zipfile.ZIP_DEFLATED)
    raw = bytearray(path.read_bytes())
    start = raw.index(b"manifest.json") + len("manifest.json")
    for i in range(start, start + 8):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(megq.SerializationError, match="Error"):
        megq.load(path)


def test_flipped_array_byte_fails_the_crc(tmp_path):
    path = tmp_path / "a.megq"
    megq.save({"w": np.arange(64, dtype=np.float32)}, path)
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"NUMPY") + 200] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(megq.SerializationError, match="Bad CRC-32"):
        megq.load(path)


@pytest.mark.parametrize("cut", [0, 1, 10, 100, -1, -22, -100])
def test_truncated_files(tmp_path, cut):
    path = tmp_path / "t.megq"
    megq.save({"w": np.arange(64, dtype=np.float32)}, path)
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(megq.SerializationError):
        megq.load(path)


@pytest.mark.parametrize("version", [True, False, "2", 2.0, None, [2], 0, 3, -1])
def test_version_must_be_a_known_int(tmp_path, version):
    m = manifest_v2(None)
    m["version"] = version
    write_raw(tmp_path / "v.megq", m)
    with pytest.raises(megq.SerializationError, match="unsupported megq file version"):
        megq.load(tmp_path / "v.megq")


@pytest.mark.parametrize("root", ["text", {"int": 3}, {"list": []}, None, {"ref": "0"}])
def test_version_1_files_must_hold_a_module(tmp_path, root):
    write_raw(tmp_path / "r.megq", manifest_v1(root))
    with pytest.raises(megq.SerializationError, match="root is not a module"):
        megq.load(tmp_path / "r.megq")


@pytest.mark.parametrize("manifest,match", [
    ([], "wrong format field"),
    ({"format": "megq-model", "version": 2, "nodes": [], "arrays": {}}, "no root"),
    ({"format": "megq-model", "version": 2, "root": None, "nodes": {}, "arrays": {}}, "node table is not a list"),
    ({"format": "megq-model", "version": 2, "root": None, "nodes": []}, "array table is not an object"),
    (manifest_v2({"int": True}), "root: malformed value|unknown value kind 'int'"),
    (manifest_v2({"int": 1, "float": "2"}), "root: malformed value"),
    (manifest_v2({"float": "1" * 100}), "unknown value kind 'float'"),
    (manifest_v2({"float": "nope"}), "bad float"),
    (manifest_v2({"np": ["<f4", "1e40"]}), "is not exactly a float32"),
    (manifest_v2({"np": ["|i1", 300]}), "300 is out of range for int8"),
    (manifest_v2({"np": ["|O", 1]}), "numpy scalar dtype '\\|O'"),
    (manifest_v2({"dict_items": [[{"list": []}, 1]]}), "dict key 0 is not a plain hashable value"),
    (manifest_v2({"dict_items": [[1]]}), "malformed dict item 0"),
    (manifest_v2({"ref": 0}, [{"kind": "tensor", "array": "a0", "extra": 1}]), "unexpected fields"),
    (manifest_v2({"ref": 0}, [{"kind": "object", "class": "megq.quantization.QuantMode", "attrs": {}}]),
     "not in megq's registry"),
    (manifest_v2(None, [], {"a0": ["<f3", [1]]}), "dtype '<f3' is not a numeric dtype"),
    (manifest_v2(None, [], {"a0": ["<U1", [1]]}), "dtype '<U1' is not a numeric dtype"),
    (manifest_v2(None, [], {"../x": ["<f4", [1]]}), "bad array name"),
    (manifest_v2(None, [], {"a0": ["<f4", [-1]]}), "malformed dtype/shape"),
    (manifest_v2(None, [], {"a0": ["<f4", [2 ** 40, 2 ** 40]]}), "max_array_bytes"),
])
def test_malformed_manifests(tmp_path, manifest, match):
    write_raw(tmp_path / "m.megq", manifest)
    with pytest.raises(megq.SerializationError, match=match):
        megq.load(tmp_path / "m.megq")


def test_manifest_json_edge_cases(tmp_path):
    for raw, match in [(b'{"format": NaN}', "NaN, which is not JSON"), (b"1" * 5000, "not JSON"),
                       (b'{"a": "\\ud800"}', "wrong format field")]:
        write_raw(tmp_path / "j.megq", raw_manifest=raw)
        with pytest.raises(megq.SerializationError, match=match):
            megq.load(tmp_path / "j.megq")


def test_array_entry_must_match_its_declaration(tmp_path):
    m = manifest_v2({"array": "a0"}, [], {"a0": ["<f4", [3]]})
    write_raw(tmp_path / "d.megq", m, {"a0": np.zeros(3, np.int32)})
    with pytest.raises(megq.SerializationError, match="manifest declares dtype <f4 shape \\(3,\\), the .npy header "
                                                      "dtype <i4"):
        megq.load(tmp_path / "d.megq")
    write_raw(tmp_path / "x.megq", manifest_v2(None, [], {}), {"a0": np.zeros(3)})
    with pytest.raises(megq.SerializationError, match="unexpected zip entry 'a0.npy'"):
        megq.load(tmp_path / "x.megq")


def test_duplicate_and_encrypted_entries(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(tmp_path / "dup.megq", "w") as z:
            z.writestr("manifest.json", json.dumps(manifest_v2(None)))
            z.writestr("manifest.json", json.dumps(manifest_v2("other")))
    with pytest.raises(megq.SerializationError, match="zip entry 'manifest.json' appears twice"):
        megq.load(tmp_path / "dup.megq")
    write_raw(tmp_path / "enc.megq", manifest_v2(None))
    raw = bytearray((tmp_path / "enc.megq").read_bytes())
    cd = raw.rindex(b"PK\x01\x02")
    raw[cd + 8] |= 1  # general purpose flag bit 0: encrypted
    (tmp_path / "enc.megq").write_bytes(bytes(raw))
    with pytest.raises(megq.SerializationError, match="is encrypted"):
        megq.load(tmp_path / "enc.megq")


def test_other_compression_methods_are_refused(tmp_path):
    write_raw(tmp_path / "l.megq", manifest_v2(None), compression=zipfile.ZIP_LZMA)
    with pytest.raises(megq.SerializationError, match="compression method 14"):
        megq.load(tmp_path / "l.megq")
