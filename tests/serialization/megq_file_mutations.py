"""Mutations of real megq files for fuzzing ``megq.load`` (used by test_fuzz.py with hypothesis and by
tools/fuzz_load.py with a seeded random generator). Each mutation takes the file's bytes and a chooser (a source of
random decisions) and returns new bytes."""
from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile
from typing import Any, Callable, Dict, List, Sequence, Tuple


class RandomChooser:
    """Decisions from ``random.Random``."""

    def __init__(self, rng: Any) -> None:
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.rng.randrange(len(seq))]


class HypothesisChooser:
    """Decisions drawn from hypothesis' ``data()`` strategy (so failures shrink)."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.data.draw(self.st.integers(0, len(seq) - 1))]


def _entries(data: bytes) -> List[Tuple[str, bytes, int]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i), i.compress_type) for i in z.infolist()]


def _zip(entries: List[Tuple[str, bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are a mutation here
        with zipfile.ZipFile(buf, "w") as z:
            for name, payload, method in entries:
                z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), payload, compress_type=method)
    return buf.getvalue()


def truncate(data: bytes, c: Any) -> bytes:
    return data[:c.integer(0, len(data) - 1)]


def flip_bits(data: bytes, c: Any) -> bytes:
    out = bytearray(data)
    for _ in range(c.integer(1, 8)):
        i = c.integer(0, len(out) - 1)
        out[i] ^= 1 << c.integer(0, 7)
    return bytes(out)


def remove_entry(data: bytes, c: Any) -> bytes:
    entries = _entries(data)
    del entries[c.integer(0, len(entries) - 1)]
    return _zip(entries)


def duplicate_entry(data: bytes, c: Any) -> bytes:
    entries = _entries(data)
    entries.insert(c.integer(0, len(entries)), c.choice(entries))
    return _zip(entries)


def swap_entry_names(data: bytes, c: Any) -> bytes:
    entries = _entries(data)
    i, j = c.integer(0, len(entries) - 1), c.integer(0, len(entries) - 1)
    (ni, pi, mi), (nj, pj, mj) = entries[i], entries[j]
    entries[i], entries[j] = (ni, pj, mj), (nj, pi, mi)
    return _zip(entries)


_HOSTILE_VALUES: List[Any] = [
    None, True, 0, -1, 2 ** 31, 2 ** 64, 10 ** 30, 1.5, "", "a0", "x" * 300, [], {}, [None], {"ref": 0},
    {"ref": -1}, {"ref": 10 ** 9}, {"int": "1"}, {"float": "nan"}, {"float": "1e999"}, {"array": "a0"},
    {"array": "a999999"}, {"array": "../a0"}, {"list": [{"ref": 0}] * 3}, {"dict": {"__class__": None}},
    {"enum": ["megq.quantization.QuantMode", "NOPE"]}, {"qdtype": ["q", None, "int8", 5, 1, False]},
    {"np": ["<f8", "inf"]}, {"np": ["<u8", -1]}, {"dict_items": [[{"list": []}, 1]]}, {"pickle": "x"},
    {"kind": "object", "class": "megq.serialization:tempfile._TemporaryFileCloser", "attrs": {}},
    {"kind": "object", "class": "megq.module.Sequential", "attrs": {"forward": None}},
    {"kind": "tensor", "array": "a0"}, {"kind": "parameter", "array": "a0", "requires_grad": 1},
    ["<f4", [2 ** 31, 2 ** 31]], ["<f4", [2 ** 28]], ["|O", [1]], ["<f4", []], "megq.module.Conv2d",
    "megq.quantization.IntegerLayer", "megq.__main__:X", "os:system",
]


def _paths(obj: Any, prefix: Tuple = ()) -> List[Tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _get(obj: Any, path: Tuple) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def mutate_manifest(data: bytes, c: Any) -> bytes:
    entries = _entries(data)
    index = next(i for i, e in enumerate(entries) if e[0] == "manifest.json")
    manifest = json.loads(entries[index][1])
    paths = _paths(manifest)
    for _ in range(c.integer(1, 3)):
        path = c.choice(paths)
        op = c.integer(0, 4)
        if not path:
            manifest = c.choice(_HOSTILE_VALUES)
            break
        parent, key = _get(manifest, path[:-1]), path[-1]
        try:
            if op == 0:  # replace with a hostile value
                parent[key] = json.loads(json.dumps(c.choice(_HOSTILE_VALUES)))
            elif op == 1:  # delete
                del parent[key]
            elif op == 2 and isinstance(parent[key], int) and not isinstance(parent[key], bool):
                parent[key] = c.choice([parent[key] + 1, parent[key] - 1, -parent[key], 2 ** 62, 2 ** 31 - 1])
            elif op == 3 and isinstance(parent, dict):  # rename a key (a value kind, an attribute, a field)
                parent[c.choice(["int", "float", "list", "tuple", "dict", "ref", "array", "np", "__dict__",
                                 "forward", "_forward_hooks", "training", "kind", "class"])] = parent.pop(key)
            elif op == 4 and isinstance(parent, list):  # duplicate a list element
                parent.insert(c.integer(0, len(parent)), parent[key])
        except (KeyError, IndexError, TypeError):
            pass
        paths = _paths(manifest)
    payload = json.dumps(manifest).encode()
    entries[index] = ("manifest.json", payload, entries[index][2])
    return _zip(entries)


def huge_declared_size(data: bytes, c: Any) -> bytes:
    """Rewrite one .npy header to declare a huge shape, or patch the zip directory's size fields."""
    if c.integer(0, 1):
        entries = _entries(data)
        arrays = [i for i, e in enumerate(entries) if e[0].endswith(".npy")]
        if arrays:
            i = c.choice(arrays)
            name, payload, method = entries[i]
            shape = c.choice([(2 ** 31,), (2 ** 40, 2 ** 40), (1 << 28,), (0,), (3, 0, 2 ** 62)])
            head = repr({"descr": c.choice(["<f4", "|u1", "<f8", "|O"]), "fortran_order": False,
                         "shape": shape}).encode()
            head += b" " * (63 - (10 + len(head)) % 64) + b"\n"
            header_len = struct.unpack("<H", payload[8:10])[0]
            payload = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head + payload[10 + header_len:]
            entries[i] = (name, payload, method)
            return _zip(entries)
    out = bytearray(data)
    records = [i for i in range(len(out) - 4) if out[i:i + 4] == b"PK\x01\x02"]
    if records:
        r = c.choice(records)
        field = c.choice([20, 24])  # compressed size, uncompressed size
        out[r + field:r + field + 4] = struct.pack("<I", c.choice([0, 1, 0xFFFFFFFE, 1 << 30, 12345]))
    return bytes(out)


MUTATIONS: Dict[str, Callable[[bytes, Any], bytes]] = {
    "truncate": truncate, "flip_bits": flip_bits, "remove_entry": remove_entry, "duplicate_entry": duplicate_entry,
    "swap_entry_names": swap_entry_names, "mutate_manifest": mutate_manifest,
    "huge_declared_size": huge_declared_size,
}
