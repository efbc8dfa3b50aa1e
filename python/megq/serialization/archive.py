"""Bounded reading of a megq file's zip container: every size is checked against :class:`Limits` from the zip
directory and the ``.npy`` header before anything is decompressed or allocated, and decompression is streamed into
exactly the declared number of bytes."""
from __future__ import annotations

import zipfile
from typing import IO, Dict, Optional, Tuple

import numpy as np
from numpy.lib import format as npy_format

from .errors import SerializationError
from .limits import Limits, MiB

__all__ = ["Archive", "MANIFEST"]

MANIFEST = "manifest.json"
_ALLOWED_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
# Entries smaller than this are exempt from the compression-ratio rule (tiny constant buffers compress well).
_RATIO_FLOOR = 1 * MiB
# Size of a zip local file header before its name and extra field (APPNOTE.TXT 4.3.7).
_LOCAL_HEADER = 30
_CHUNK = 1 * MiB
# numpy dtypes megq stores: booleans, integers, floats, complex; never objects, strings, records or datetimes.
_DTYPE_KINDS = "biufc"
# numpy's .npy header is at most 64 KiB (version 1) and megq writes short ones.
_MAX_NPY_HEADER = 65536


class Archive:
    """An opened megq zip file whose directory passed the structural checks."""

    def __init__(self, fileobj: IO[bytes], file_size: int, label: str, limits: Limits) -> None:
        self.label = label
        self.limits = limits
        self.zf = zipfile.ZipFile(fileobj)
        infos = self.zf.infolist()
        if len(infos) > limits.max_arrays + 1:
            self.fail(f"{len(infos)} zip entries (limit {limits.max_arrays + 1} under Limits.max_arrays)")
        self.entries: Dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if info.filename in self.entries:
                self.fail(f"zip entry {info.filename!r} appears twice")
            if info.flag_bits & 0x1:
                self.fail(f"zip entry {info.filename!r} is encrypted")
            if info.compress_type not in _ALLOWED_METHODS:
                self.fail(f"zip entry {info.filename!r} uses compression method {info.compress_type} "
                          f"(megq reads stored or deflated entries only)")
            if info.compress_size > file_size or info.header_offset + _LOCAL_HEADER > file_size:
                self.fail(f"zip entry {info.filename!r} claims more bytes than the file has")
            if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
                self.fail(f"zip entry {info.filename!r}: stored entry with differing sizes")
            self.entries[info.filename] = info
        # Entries must not overlap: overlapping entries let a small file expand many times over (one compressed
        # stream referenced by many directory entries).
        spans = sorted((i.header_offset, i.header_offset + _LOCAL_HEADER + len(i.orig_filename.encode("utf-8",
                       "surrogateescape")) + i.compress_size, i.filename) for i in infos)
        for (_, end, name), (next_start, _, next_name) in zip(spans, spans[1:]):
            if end > next_start:
                self.fail(f"zip entries {name!r} and {next_name!r} overlap")
        if spans and spans[-1][1] > file_size:
            self.fail(f"zip entry {spans[-1][2]!r} runs past the end of the file")

    def fail(self, what: str) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
        raise SerializationError(f"path: {self.label}: {what}")

    def close(self) -> None:
        self.zf.close()

    # -- manifest -------------------------------------------------------------------------------------------------
    def read_manifest(self) -> bytes:
        info = self.entries.get(MANIFEST)
        if info is None:
            self.fail("not a megq model file (no manifest)")
        cap = self.limits.max_manifest_bytes
        if info.file_size > cap:
            self.fail(f"the manifest is {info.file_size} bytes (limit {cap} under Limits.max_manifest_bytes)")
        with self.zf.open(info) as f:
            # The directory's size is not trusted either: read at most one byte more than it claims.
            data = f.read(info.file_size + 1)
        if len(data) != info.file_size:
            self.fail("the manifest's size differs from the zip directory's")
        return data

    # -- arrays ---------------------------------------------------------------------------------------------------
    def array_entry(self, name: str) -> zipfile.ZipInfo:
        info = self.entries.get(name + ".npy")
        if info is None:
            self.fail(f"array {name} is missing")
        return info

    def check_entry_size(self, name: str) -> int:
        """Directory-level checks of one array entry; returns its uncompressed size."""
        info = self.array_entry(name)
        limit = self.limits.max_array_bytes + _MAX_NPY_HEADER
        if info.file_size > limit:
            self.fail(f"array {name} is {info.file_size} bytes (limit {self.limits.max_array_bytes} under "
                      f"Limits.max_array_bytes)")
        if (info.compress_type != zipfile.ZIP_STORED and info.file_size > _RATIO_FLOOR
                and info.file_size > self.limits.max_compression_ratio * max(info.compress_size, 1)):
            self.fail(f"array {name} expands {info.file_size / max(info.compress_size, 1):.0f}-fold "
                      f"(limit {self.limits.max_compression_ratio:g} under Limits.max_compression_ratio)")
        return info.file_size

    def read_array(self, name: str, expect: Optional[Tuple[str, Tuple[int, ...]]] = None) -> np.ndarray:
        """The array of entry ``name``.npy: header checked (dtype, order, size == entry size), then data streamed
        into a buffer of exactly that size. ``expect`` is the manifest's (dtype, shape) for it."""
        info = self.array_entry(name)
        self.check_entry_size(name)
        with self.zf.open(info) as f:
            try:
                major, minor = npy_format.read_magic(f)
                if (major, minor) == (1, 0):
                    shape, fortran, dtype = npy_format.read_array_header_1_0(f)
                elif (major, minor) == (2, 0):
                    shape, fortran, dtype = npy_format.read_array_header_2_0(f)
                else:
                    self.fail(f"array {name}: unsupported .npy version {major}.{minor}")
            except SerializationError:
                raise
            except ValueError as e:
                if "allow_pickle" in str(e) or "object" in str(e).lower():
                    self.fail(f"array {name}: object arrays need pickle, which megq never reads")
                self.fail(f"array {name}: bad .npy header ({e})")
            header_len = f.tell()
            if dtype.hasobject:
                self.fail(f"array {name}: object arrays need pickle, which megq never reads")
            if dtype.kind not in _DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
                self.fail(f"array {name}: dtype {dtype.str} is not a numeric dtype megq stores")
            if fortran:
                self.fail(f"array {name}: Fortran-ordered arrays are not written by megq")
            if not all(isinstance(d, int) and d >= 0 for d in shape):
                self.fail(f"array {name}: bad shape {shape!r}")
            count = 1
            for d in shape:
                count *= d
            nbytes = count * dtype.itemsize
            if nbytes > self.limits.max_array_bytes:
                self.fail(f"array {name} is {nbytes} bytes (limit {self.limits.max_array_bytes} under "
                          f"Limits.max_array_bytes)")
            if header_len + nbytes != info.file_size:
                self.fail(f"array {name}: the .npy header declares {nbytes} data bytes, the zip entry holds "
                          f"{info.file_size - header_len}")
            if expect is not None and (expect[0] != dtype.str or tuple(expect[1]) != tuple(shape)):
                self.fail(f"array {name}: the manifest declares dtype {expect[0]} shape {tuple(expect[1])}, the "
                          f".npy header dtype {dtype.str} shape {tuple(shape)}")
            arr = np.empty(shape, dtype)
            view = memoryview(arr.reshape(-1).view(np.uint8)) if nbytes else memoryview(b"")
            pos = 0
            while pos < nbytes:
                chunk = f.read(min(_CHUNK, nbytes - pos))
                if not chunk:
                    self.fail(f"array {name} is truncated")
                view[pos:pos + len(chunk)] = chunk
                pos += len(chunk)
            if f.read(1):  # reaching the end also makes zipfile check the entry's CRC-32
                self.fail(f"array {name} has trailing bytes")
        return arr
