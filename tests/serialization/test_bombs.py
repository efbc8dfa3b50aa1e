"""Resource bombs are refused before they cost memory or time. Each bomb file is loaded in a fresh subprocess that
reports its peak-RSS growth and CPU time (resource.getrusage) and the peak of
Python and numpy allocations during the load (tracemalloc); the bounds are an order of magnitude above what a
refusal costs and two below what the bombs cost before the limits existed (gigabytes, tens of seconds)."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from megq_file_helpers import manifest_v1, manifest_v2, write_raw

_PROBE = textwrap.dedent("""
    import json, resource, sys, time, tracemalloc
    import megq
    from megq.serialization import registry
    registry.resolve("")  # import and fill everything first: the baseline includes megq itself
    before = resource.getrusage(resource.RUSAGE_SELF)
    tracemalloc.start()
    try:
        megq.load(sys.argv[1])
        outcome = "loaded"
    except megq.SerializationError as e:
        outcome = "SerializationError: " + str(e)
    except BaseException as e:
        outcome = type(e).__name__ + ": " + str(e)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"outcome": outcome, "rss_growth_kib": after.ru_maxrss - before.ru_maxrss, "cpu_s": cpu,
                      "traced_peak_kib": traced_peak // 1024}))
""")

MAX_RSS_GROWTH_KIB = 64 * 1024
MAX_CPU_S = 3.0


def probe(path):
    out = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _deflated_zeros_entry(z, name, header, nbytes):
    """Write a deflated entry of ``header`` + ``nbytes`` zeros, compressing in chunks (never holding it whole)."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with z.open(info, "w", force_zip64=True) as f:
        f.write(header)
        chunk = bytes(1 << 22)
        left = nbytes
        while left:
            f.write(chunk[:min(left, len(chunk))])
            left -= min(left, len(chunk))


def _npy_header(shape, dtype="<f4"):
    head = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    pad = 64 - (10 + len(head) + 1) % 64
    head = head + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head


def bomb_deflated_array(path, version):
    n = 64 * 1024 * 1024 // 4  # 64 MiB of zeros deflate to ~64 KB
    node = [{"kind": "tensor", "array": "a0"}]
    manifest = manifest_v2({"ref": 0}, node, {"a0": ["<f4", [n]]}) if version == 2 else manifest_v1({"ref": 0}, node)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest))
        _deflated_zeros_entry(z, "a0.npy", _npy_header((n,)), n * 4)


def bomb_declared_gib_parameter(path, version):
    """A 1 GiB parameter declared by the manifest and the .npy header, with 1 MiB of data behind it."""
    n = (1 << 30) // 4
    data = _npy_header((n,)) + bytes(1 << 20)
    node = [{"kind": "parameter", "array": "a0"}]
    manifest = manifest_v2({"ref": 0}, node, {"a0": ["<f4", [n]]}) if version == 2 else manifest_v1({"ref": 0}, node)
    write_raw(path, manifest, {"a0": data})


def bomb_lying_zip_directory(path, version):
    """The zip directory claims a 1 GiB stored entry in a file of a few hundred bytes."""
    write_raw(path, manifest_v1({"ref": 0}, [{"kind": "tensor", "array": "a0"}]), {"a0": np.zeros(4, np.float32)})
    raw = bytearray(path.read_bytes())
    cd = raw.rindex(b"PK\x01\x02")  # last central directory record: a0.npy
    raw[cd + 20:cd + 28] = struct.pack("<II", 1 << 30, 1 << 30)
    path.write_bytes(bytes(raw))


def bomb_empty_object_nodes(path, version):
    body = b'{"format":"megq-model","version":%d,"root":{"ref":0},"arrays":{},"nodes":[' % version
    body += b"{}," * (5_000_000) + b"{}]}"
    write_raw(path, raw_manifest=body, compression=zipfile.ZIP_DEFLATED)


def bomb_nested_lists(path, version):
    depth = 1_400_000  # 2.8 M JSON containers in a 15 MB manifest (under max_manifest_bytes)
    body = b'{"format":"megq-model","version":%d,"nodes":[],"arrays":{},"root":' % version
    body += b'{"list":[' * depth + b"]}" * depth + b"}"
    write_raw(path, raw_manifest=body, compression=zipfile.ZIP_DEFLATED)


def bomb_deep_nesting(path, version):
    depth = 150_000  # few containers, but nested far deeper than any model
    body = b'{"format":"megq-model","version":%d,"nodes":[],"arrays":{},"root":' % version
    body += b"[" * depth + b"]" * depth + b"}"
    write_raw(path, raw_manifest=body, compression=zipfile.ZIP_DEFLATED)


def bomb_huge_manifest(path, version):
    body = json.dumps(manifest_v2("x" * (40 * 1024 * 1024))).encode()
    write_raw(path, raw_manifest=body, compression=zipfile.ZIP_DEFLATED)


def bomb_many_nodes(path, version):
    nodes = [{"kind": "tensor", "array": "a0"}] * 60_000
    write_raw(path, manifest_v2({"ref": 0}, nodes, {"a0": ["<f4", [1]]}), {"a0": np.zeros(1, np.float32)},
              compression=zipfile.ZIP_DEFLATED)


BOMBS = {
    "deflated_array": (bomb_deflated_array, "expands .*-fold .*max_compression_ratio"),
    "declared_gib_parameter": (bomb_declared_gib_parameter, "array a0.*(holds|claims|bytes for)"),
    "lying_zip_directory": (bomb_lying_zip_directory, "claims more bytes than the file has|runs past the end"),
    "empty_object_nodes": (bomb_empty_object_nodes, "JSON objects/arrays .*max_manifest_values"),
    "nested_lists": (bomb_nested_lists, "JSON objects/arrays .*max_manifest_values"),
    "deep_nesting": (bomb_deep_nesting, "nests 150001 levels deep"),
    "huge_manifest": (bomb_huge_manifest, "max_manifest_bytes"),
    "many_nodes": (bomb_many_nodes, "60000 nodes .*max_nodes"),
}


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_bomb_is_refused_cheaply(tmp_path, kind, version):
    make, match = BOMBS[kind]
    path = tmp_path / f"{kind}.megq"
    make(path, version)
    assert path.stat().st_size < 2 * 1024 * 1024  # each bomb is a small file
    report = probe(path)
    import re

    assert report["outcome"].startswith("SerializationError: "), report
    if not (version == 1 and kind in ("many_nodes",)):
        assert re.search(match, report["outcome"]), report
    assert report["rss_growth_kib"] < MAX_RSS_GROWTH_KIB, report
    assert report["traced_peak_kib"] < MAX_RSS_GROWTH_KIB, report
    assert report["cpu_s"] < MAX_CPU_S, report


def test_raised_limits_admit_a_big_honest_file(tmp_path):
    """The same kind of content, honestly stored, loads when it is within the (raised) limits."""
    import megq
    from megq.serialization import Limits

    arr = np.random.default_rng(0).standard_normal(3 * 1024 * 1024 // 4).astype(np.float32)  # 3 MiB
    megq.save({"w": arr}, tmp_path / "big.megq")
    with pytest.raises(megq.SerializationError, match="max_array_bytes"):
        megq.load(tmp_path / "big.megq", limits=Limits(max_array_bytes=1024 * 1024))
    with pytest.raises(megq.SerializationError, match="max_total_bytes"):
        megq.load(tmp_path / "big.megq", limits=Limits(max_total_bytes=1024 * 1024))
    back = megq.load(tmp_path / "big.megq", limits=Limits(max_array_bytes=4 * 1024 * 1024))
    assert back["w"].tobytes() == arr.tobytes()
