"""``megq.save`` and ``megq.load``."""
from __future__ import annotations

import json
import os
import zipfile
from typing import IO, Any, Optional

import numpy as np
from numpy.lib import format as npy_format

from .archive import MANIFEST, Archive
from .atomic import atomic_write
from .decode import Reader
from .encode import Writer
from .errors import SerializationError
from .limits import Limits
from .manifest import parse_manifest

__all__ = ["save", "load", "FORMAT", "VERSION"]

FORMAT = "megq-model"
VERSION = 2
# Version 1 (megq 0.1) named classes by "module:qualname" and held one module tree; it is read through the same
# registry (its class paths are looked up among registered classes only), never written.
_READABLE_VERSIONS = (1, 2)
# Fixed timestamps make two saves of the same object byte-identical.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def save(obj: Any, path: "str | os.PathLike[str]") -> None:
    """Write ``obj`` to ``path`` atomically.

    ``obj`` is a module (float, QFloat or Q model), a tensor, a numpy array, or a checkpoint built of dicts,
    lists and tuples of those and of None, bool, int, float, str and numpy scalars, e.g.
    ``{"epoch": 3, "state_dict": net.state_dict(), "optimizer": opt.state_dict()}``. Objects of classes outside
    megq's registry raise ``TypeError`` naming where they sit in ``obj``; the target file is then left untouched.

    The file is replaced atomically (temporary file + rename; a symlink's target is replaced, the link is kept); a
    new file gets mode ``0o666 & ~umask``, an existing one keeps its mode.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError("path: expected a text path, got bytes")
    writer = Writer(Limits().max_depth)
    root = writer.value(obj, 0, "obj")
    manifest = {"format": FORMAT, "version": VERSION, "root": root, "nodes": writer.nodes,
                "arrays": writer.manifest_arrays()}
    payload = json.dumps(manifest, separators=(",", ":"), allow_nan=False).encode()

    def write(f: IO[bytes]) -> None:
        with zipfile.ZipFile(f, "w", allowZip64=True) as z:
            info = zipfile.ZipInfo(MANIFEST, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, payload)
            for name, arr in writer.arrays.items():
                # Arrays are stored, not deflated: float weights barely compress, and a loader can then check
                # every array's size against the file's own size.
                info = zipfile.ZipInfo(name + ".npy", date_time=_EPOCH)
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                info.file_size = arr.nbytes + 128
                with z.open(info, "w", force_zip64=arr.nbytes > (1 << 31) - (1 << 20)) as out:
                    npy_format.write_array(out, np.asarray(arr), version=(1, 0), allow_pickle=False)

    atomic_write(path, write)


def load(path: "str | os.PathLike[str]", *, limits: Optional[Limits] = None) -> Any:
    """Read what :func:`save` wrote: exactly that object (modules rebuilt, tensors and arrays with their dtypes,
    shared objects shared) or ``SerializationError`` (a ``ValueError``) naming the entry or node at fault.

    Safe on untrusted files: nothing is unpickled, imported or executed; only classes in megq's registry are
    instantiated (without calling ``__init__``); every size is checked against ``limits`` (default
    :class:`Limits()`) before it is read. A missing or unreadable path raises the usual ``OSError``.
    """
    if limits is None:
        limits = Limits()
    elif not isinstance(limits, Limits):
        raise TypeError(f"limits: expected a megq.serialization.Limits, got {type(limits).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no such file: {path}")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            return _load(f, size, str(path), limits)
        except SerializationError:
            raise
        except KeyboardInterrupt:
            raise
        except RecursionError:
            raise SerializationError(f"path: {path}: nesting too deep for the interpreter's stack") from None
        except MemoryError:
            raise SerializationError(f"path: {path}: not enough memory for the file's declared contents") from None
        except BaseException as e:  # noqa: B902 - SystemExit & co from a malformed file must not end the program
            raise SerializationError(f"path: {path}: corrupt megq file ({type(e).__name__}: {e})") from None


def _load(f: IO[bytes], size: int, label: str, limits: Limits) -> Any:
    try:
        archive = Archive(f, size, label, limits)
    except zipfile.BadZipFile as e:
        raise SerializationError(f"path: {label} is not a megq model file (not a zip archive: {e})") from None
    try:
        manifest = parse_manifest(archive.read_manifest(), limits, archive.fail)
        if type(manifest) is not dict or manifest.get("format") != FORMAT:
            archive.fail("not a megq model file (wrong format field)")
        version = manifest.get("version")
        if type(version) is not int or version not in _READABLE_VERSIONS:
            archive.fail(f"unsupported megq file version {str(version)[:20]} (this megq reads versions "
                         f"{', '.join(map(str, _READABLE_VERSIONS))})")
        reader = Reader(archive, manifest, version, limits)
        if "root" not in manifest:
            archive.fail("the manifest has no root")
        root = manifest["root"]
        if version == 1:
            # Version 1 held exactly one module tree.
            if type(root) is not dict or list(root) != ["ref"] or type(root["ref"]) is not int:
                archive.fail("version-1 file whose root is not a module")
            obj = reader.value(root, 0, "root")
            from ..module.module import Module

            if not isinstance(obj, Module):
                archive.fail("version-1 file whose root is not a module")
            return obj
        return reader.value(root, 0, "root")
    finally:
        archive.close()
