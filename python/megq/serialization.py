"""Safe model files: ``megq.save(module, path)`` and ``megq.load(path)``.

A file is a zip archive (numpy's ``.npz`` container) holding plain ``.npy`` arrays and one JSON
manifest that describes the module tree. Nothing in it is ever executed: there is no pickle
(arrays are read with ``allow_pickle=False``), and the loader only rebuilds classes from an
allow-list (classes defined inside the ``megq`` package, plus those the user registers with
:func:`register_serializable`), setting their attributes directly without calling ``__init__``.

What is stored for each module: its class, and every attribute of its ``__dict__`` that is a
module, a tensor/parameter, a numpy array, a plain value (None, bool, int, float, str) or a
list/tuple/dict of those, or an object of a registered record class (such as QParams).
Attributes whose name starts with ``_packed`` (kernels' packed weights, derived and CPU-specific)
and hooks are not stored; quantized modules re-pack their int8 weights on the loading machine, so
a file written on one CPU runs on any other.

Files are written atomically (a temporary file renamed over the target), so an interrupted save
never leaves a half-written model behind.
"""
from __future__ import annotations

import enum
import io
import json
import os
import tempfile
import zipfile
from collections import OrderedDict
from typing import Any, Dict, Type

import numpy as np

FORMAT = "megq-model"
VERSION = 1
_MANIFEST = "manifest.json"
_MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_MAX_DEPTH = 200

_EXTRA_CLASSES: Dict[str, Type] = {}


def register_serializable(cls: Type) -> Type:
    """Allow ``megq.load`` to rebuild instances of ``cls`` (a user-defined Module subclass, or a plain
    record class whose state is its ``__dict__``). Usable as a class decorator."""
    if not isinstance(cls, type):
        raise TypeError(f"cls: expected a class, got {type(cls).__name__}")
    _EXTRA_CLASSES[_class_path(cls)] = cls
    return cls


def _class_path(cls: Type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve_class(path: str) -> Type:
    if path in _EXTRA_CLASSES:
        return _EXTRA_CLASSES[path]
    module_name, _, qualname = path.partition(":")
    if not (module_name == "megq" or module_name.startswith("megq.")) or not qualname:
        raise ValueError(f"path: the file names class {path!r}, which is neither part of megq nor registered "
                         f"with megq.register_serializable")
    import importlib

    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        if not part.isidentifier():
            raise ValueError(f"path: invalid class name {path!r} in the file")
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"path: the file names class {path!r}, which this megq does not have")
    if not isinstance(obj, type):
        raise ValueError(f"path: {path!r} in the file is not a class")
    return obj


class _Writer:
    def __init__(self) -> None:
        self.arrays: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self.ids: Dict[int, int] = {}  # id(object) -> node index, so shared tensors/modules stay shared
        self.nodes: list = []

    def array(self, a: np.ndarray) -> str:
        if a.dtype.hasobject:
            raise TypeError("module: object arrays cannot be saved")
        name = f"a{len(self.arrays)}"
        self.arrays[name] = np.ascontiguousarray(a)
        return name

    def value(self, v: Any, depth: int = 0) -> Any:
        from .module.module import Module
        from .tensor import Parameter, Tensor

        if depth > _MAX_DEPTH:
            raise ValueError("module: nesting too deep to save")
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, np.integer)):
            return {"int": int(v)}
        if isinstance(v, (float, np.floating)):
            return {"float": repr(float(v))}
        if isinstance(v, np.ndarray):
            return {"array": self.array(v)}
        if isinstance(v, enum.Enum) and _is_megq_class(type(v)):
            return {"enum": [_class_path(type(v)), v.name]}
        if _is_quant_dtype(v):
            return {"qdtype": [v.name, v.cname, v.np_dtype_str, v.qmin, v.qmax, v.is_unsigned]}
        if isinstance(v, (list, tuple)):
            return {"list" if isinstance(v, list) else "tuple": [self.value(x, depth + 1) for x in v]}
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise TypeError("module: only dicts with str keys can be saved")
            return {"dict": {k: self.value(x, depth + 1) for k, x in v.items()}}
        if isinstance(v, (Tensor, Module)) or _class_path(type(v)) in _EXTRA_CLASSES or _is_megq_record(v):
            key = id(v)
            if key in self.ids:
                return {"ref": self.ids[key]}
            index = len(self.nodes)
            self.ids[key] = index
            self.nodes.append(None)
            if isinstance(v, Tensor):
                node = {"kind": "parameter" if isinstance(v, Parameter) else "tensor",
                        "array": self.array(np.asarray(v.numpy()))}
            else:
                node = {"kind": "object", "class": _class_path(type(v)), "attrs": self.attrs(v, depth + 1)}
            self.nodes[index] = node
            return {"ref": index}
        raise TypeError(f"module: cannot save a value of type {type(v).__module__}.{type(v).__qualname__}; "
                        f"register its class with megq.register_serializable if it is plain data")

    def attrs(self, obj: Any, depth: int) -> dict:
        out = {}
        for name, v in vars(obj).items():
            if name.startswith("_packed") or name in ("_forward_hooks", "_forward_pre_hooks"):
                continue
            if callable(v) and not isinstance(v, type) and not _is_storable_callable(v):
                continue
            out[name] = self.value(v, depth)
        return out


def _is_storable_callable(v: Any) -> bool:
    from .module.module import Module

    return isinstance(v, Module)


def _is_megq_class(cls: Type) -> bool:
    return cls.__module__ == "megq" or cls.__module__.startswith("megq.")


def _is_megq_record(v: Any) -> bool:
    """Objects of megq's own classes (QParams, observers' helpers, ...) are saved by their attributes."""
    return _is_megq_class(type(v)) and hasattr(v, "__dict__") and not isinstance(v, type) and not callable(v)


def _is_quant_dtype(v: Any) -> bool:
    from .quantization.dtype import QuantDtypeMeta

    return isinstance(v, QuantDtypeMeta)


def save(module: Any, path: str | os.PathLike) -> None:
    """Write ``module`` (a float, QFloat or Q model, or any object megq can save) to ``path``.

    Raises TypeError if some attribute cannot be saved safely (the message names its type); the
    target file is then left untouched.
    """
    from .module.module import Module

    if not isinstance(module, Module):
        raise TypeError(f"module: expected a megq Module, got {type(module).__name__}")
    path = os.fspath(path)
    writer = _Writer()
    root = writer.value(module)
    manifest = {"format": FORMAT, "version": VERSION, "root": root, "nodes": writer.nodes}
    payload = json.dumps(manifest, separators=(",", ":")).encode()
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".megq-save-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
                z.writestr(_MANIFEST, payload)
                for name, arr in writer.arrays.items():
                    buf = io.BytesIO()
                    np.save(buf, arr, allow_pickle=False)
                    z.writestr(name + ".npy", buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _Reader:
    def __init__(self, zf: zipfile.ZipFile, manifest: dict) -> None:
        self.zf = zf
        self.nodes = manifest["nodes"]
        if not isinstance(self.nodes, list):
            raise ValueError("path: malformed megq file (nodes)")
        self.built: Dict[int, Any] = {}
        self.arrays: Dict[str, np.ndarray] = {}

    def array(self, name: Any) -> np.ndarray:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError("path: malformed megq file (array name)")
        if name not in self.arrays:
            try:
                raw = self.zf.read(name + ".npy")
            except KeyError:
                raise ValueError(f"path: malformed megq file (array {name} is missing)") from None
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
            self.arrays[name] = arr
        return self.arrays[name]

    def value(self, v: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError("path: malformed megq file (nesting too deep)")
        if v is None or isinstance(v, (bool, str)):
            return v
        if not isinstance(v, dict) or len(v) != 1:
            raise ValueError("path: malformed megq file (value)")
        (kind, payload), = v.items()
        if kind == "int" and isinstance(payload, int) and not isinstance(payload, bool):
            return payload
        if kind == "float" and isinstance(payload, str):
            try:
                return float(payload)
            except ValueError:
                raise ValueError("path: malformed megq file (float)") from None
        if kind == "array":
            return self.array(payload)
        if kind == "enum" and isinstance(payload, list) and len(payload) == 2 and isinstance(payload[1], str):
            cls = _resolve_class(payload[0])
            if not issubclass(cls, enum.Enum) or payload[1] not in cls.__members__:
                raise ValueError("path: malformed megq file (enum)")
            return cls[payload[1]]
        if kind == "qdtype" and isinstance(payload, list) and len(payload) == 6:
            from .quantization.dtype import QuantDtypeMeta, _builtin_quant_dtypes

            meta = QuantDtypeMeta(*payload)
            # builtins keep their identity (fake quant checks observer dtype *is* its own)
            return _builtin_quant_dtypes.get(meta.name) if _builtin_quant_dtypes.get(meta.name) == meta else meta
        if kind in ("list", "tuple") and isinstance(payload, list):
            items = [self.value(x, depth + 1) for x in payload]
            return items if kind == "list" else tuple(items)
        if kind == "dict" and isinstance(payload, dict):
            return {str(k): self.value(x, depth + 1) for k, x in payload.items()}
        if kind == "ref" and isinstance(payload, int) and 0 <= payload < len(self.nodes):
            return self.node(payload, depth + 1)
        raise ValueError(f"path: malformed megq file (unknown value kind {kind!r})")

    def node(self, index: int, depth: int) -> Any:
        from .module.module import Module
        from .tensor import Parameter, Tensor

        if index in self.built:
            return self.built[index]
        node = self.nodes[index]
        if not isinstance(node, dict):
            raise ValueError("path: malformed megq file (node)")
        kind = node.get("kind")
        if kind in ("tensor", "parameter"):
            arr = np.array(self.array(node.get("array")))
            obj = Parameter(arr) if kind == "parameter" else Tensor(arr)
            self.built[index] = obj
            return obj
        if kind != "object" or not isinstance(node.get("class"), str) or not isinstance(node.get("attrs"), dict):
            raise ValueError("path: malformed megq file (object node)")
        cls = _resolve_class(node["class"])
        try:
            obj = cls.__new__(cls)
        except TypeError:
            raise ValueError(f"path: class {node['class']!r} in the file cannot be rebuilt from attributes") from None
        self.built[index] = obj  # before the attributes: cycles and shared children resolve to this object
        if isinstance(obj, Module):
            Module.__init__(obj)
        for name, raw in node["attrs"].items():
            if not isinstance(name, str) or not name or name.startswith("__"):
                raise ValueError(f"path: malformed megq file (attribute name {name!r})")
            object.__setattr__(obj, name, self.value(raw, depth + 1))
        return obj


def load(path: str | os.PathLike) -> Any:
    """Read a model written by :func:`save`. Raises ValueError for a file that is not a valid megq
    model (the message says what is wrong), never executes code from the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file: {path}")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ValueError(f"path: {path} is not a megq model file (not a zip archive)") from None
    with zf:
        try:
            info = zf.getinfo(_MANIFEST)
        except KeyError:
            raise ValueError(f"path: {path} is not a megq model file (no manifest)") from None
        if info.file_size > _MAX_MANIFEST_BYTES:
            raise ValueError("path: malformed megq file (manifest too large)")
        try:
            manifest = json.loads(zf.read(_MANIFEST))
        except (ValueError, UnicodeDecodeError):
            raise ValueError("path: malformed megq file (manifest is not JSON)") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"path: {path} is not a megq model file")
        if manifest.get("version") != VERSION:
            raise ValueError(f"path: unsupported megq file version {manifest.get('version')!r} "
                             f"(this megq reads version {VERSION})")
        try:
            return _Reader(zf, manifest).value(manifest.get("root"))
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise ValueError(f"path: corrupt megq file: {e}") from None
