"""Rebuilding objects from a checked manifest (the reading half of the format). Every class comes from the closed
registry; every value kind is one of a fixed list; every failure is a SerializationError naming the node or value."""
from __future__ import annotations

import enum
import re
from collections import OrderedDict
from typing import Any, Dict, List, NoReturn, Optional, Tuple

import numpy as np

from . import registry
from .archive import MANIFEST, Archive
from .encode import SCALAR_DTYPES
from .limits import Limits

__all__ = ["Reader"]

_ARRAY_NAME = re.compile(r"^a[0-9]{1,9}$")
_DTYPE_TEXT = re.compile(r"^[<>|][biufc][0-9]{1,2}$")
_MAX_NDIM = 64
_MAX_FLOAT_TEXT = 64
_QDTYPE_STORAGE = ("int8", "uint8", "int16", "uint16", "int32", "uint32")


class Reader:
    def __init__(self, archive: Archive, manifest: Dict[str, Any], version: int, limits: Limits) -> None:
        self.archive = archive
        self.version = version
        self.limits = limits
        self.built: Dict[int, Any] = {}
        self.arrays: Dict[str, np.ndarray] = {}
        nodes = manifest.get("nodes")
        if not isinstance(nodes, list):
            self.fail("the manifest's node table is not a list")
        if len(nodes) > limits.max_nodes:
            self.fail(f"{len(nodes)} nodes (limit {limits.max_nodes} under Limits.max_nodes)")
        self.nodes: List[Any] = nodes
        self.declared: Dict[str, Tuple[str, Tuple[int, ...]]] = {}
        self._check_arrays(manifest)

    def fail(self, what: str) -> NoReturn:
        self.archive.fail(what)
        raise AssertionError  # unreachable: fail raises

    # -- array table: every size known and within limits before any array is read ----------------------------------
    def _check_arrays(self, manifest: Dict[str, Any]) -> None:
        entries = self.archive.entries
        total = 0
        if self.version >= 2:
            table = manifest.get("arrays")
            if not isinstance(table, dict):
                self.fail("the manifest's array table is not an object")
            if len(table) > self.limits.max_arrays:
                self.fail(f"{len(table)} arrays (limit {self.limits.max_arrays} under Limits.max_arrays)")
            for name, spec in table.items():
                if not _ARRAY_NAME.match(name):
                    self.fail(f"bad array name {name[:40]!r}")
                if (not isinstance(spec, list) or len(spec) != 2 or not isinstance(spec[0], str)
                        or not isinstance(spec[1], list) or len(spec[1]) > _MAX_NDIM
                        or not all(type(d) is int and d >= 0 for d in spec[1])):
                    self.fail(f"array {name}: malformed dtype/shape declaration")
                dtype = self._dtype(spec[0], f"array {name}")
                count = 1
                for d in spec[1]:
                    count *= d
                nbytes = count * dtype.itemsize
                if nbytes > self.limits.max_array_bytes:
                    self.fail(f"array {name} declares {nbytes} bytes (limit {self.limits.max_array_bytes} under "
                              f"Limits.max_array_bytes)")
                stored = self.archive.check_entry_size(name)
                if not 0 < stored - nbytes <= 65536 + 16:
                    self.fail(f"array {name}: the zip entry holds {stored} bytes for {nbytes} declared data bytes")
                total += nbytes
                self.declared[name] = (dtype.str, tuple(spec[1]))
            expected = {MANIFEST} | {n + ".npy" for n in table}
            extra = sorted(set(entries) - expected)
            if extra:
                self.fail(f"unexpected zip entry {extra[0][:80]!r}")
        else:
            for entry in entries:
                if entry == MANIFEST:
                    continue
                if not (entry.endswith(".npy") and _ARRAY_NAME.match(entry[:-4])):
                    self.fail(f"unexpected zip entry {entry[:80]!r}")
                total += self.archive.check_entry_size(entry[:-4])
        if total > self.limits.max_total_bytes:
            self.fail(f"the arrays total {total} bytes (limit {self.limits.max_total_bytes} under "
                      f"Limits.max_total_bytes)")

    def _dtype(self, text: str, where: str) -> np.dtype:
        # Only the canonical numeric form numpy writes ("<f4", "|b1", ">i8"...); never parse anything richer.
        try:
            dt = np.dtype(text) if _DTYPE_TEXT.match(text) else None
        except TypeError:  # e.g. "<f3": the right shape of text but no such type
            dt = None
        if dt is None or dt.kind not in "biufc" or dt.str != text:
            self.fail(f"{where}: dtype {text[:20]!r} is not a numeric dtype megq stores")
        return dt

    def array(self, name: Any, where: str) -> np.ndarray:
        if not isinstance(name, str) or not _ARRAY_NAME.match(name):
            self.fail(f"{where}: bad array reference")
        if self.version >= 2 and name not in self.declared:
            self.fail(f"{where}: array {name} is not in the manifest's array table")
        if name not in self.arrays:
            self.arrays[name] = self.archive.read_array(name, self.declared.get(name))
        return self.arrays[name]

    # -- values ---------------------------------------------------------------------------------------------------
    def value(self, v: Any, depth: int, where: str) -> Any:
        if depth > self.limits.max_depth:
            self.fail(f"{where}: values nest more than {self.limits.max_depth} levels (Limits.max_depth)")
        if v is None or type(v) is bool or type(v) is str:
            return v
        if type(v) is not dict or len(v) != 1:
            self.fail(f"{where}: malformed value")
        (kind, p), = v.items()
        if kind == "int" and type(p) is int:
            return p
        if kind == "float" and type(p) is str and len(p) <= _MAX_FLOAT_TEXT:
            try:
                return float(p)
            except ValueError:
                self.fail(f"{where}: bad float {p!r}")
        if kind == "np" and self.version >= 2 and type(p) is list and len(p) == 2 and type(p[0]) is str:
            return self._np_scalar(p[0], p[1], where)
        if kind == "array":
            return self.array(p, where)
        if kind == "ref" and type(p) is int:
            if not 0 <= p < len(self.nodes):
                self.fail(f"{where}: reference to node {p}, the file has {len(self.nodes)}")
            return self.node(p, depth + 1)
        if kind in ("list", "tuple") and type(p) is list:
            items = [self.value(x, depth + 1, f"{where}[{i}]") for i, x in enumerate(p)]
            return items if kind == "list" else tuple(items)
        if kind in ("dict", "odict") and type(p) is dict:
            out = {k: self.value(x, depth + 1, f"{where}[{k[:40]!r}]") for k, x in p.items()}
            return out if kind == "dict" else OrderedDict(out)
        if kind in ("dict_items", "odict_items") and self.version >= 2 and type(p) is list:
            pairs = []
            for i, item in enumerate(p):
                if type(item) is not list or len(item) != 2:
                    self.fail(f"{where}: malformed dict item {i}")
                k = self.value(item[0], depth + 1, f"{where} key {i}")
                if not _hashable_plain(k):
                    self.fail(f"{where}: dict key {i} is not a plain hashable value")
                pairs.append((k, self.value(item[1], depth + 1, f"{where}[{k!r}]")))
            return dict(pairs) if kind == "dict_items" else OrderedDict(pairs)
        if kind == "enum" and type(p) is list and len(p) == 2 and type(p[0]) is str and type(p[1]) is str:
            cls = self._class(p[0])
            if cls is None or not issubclass(cls, enum.Enum) or p[1] not in cls.__members__:
                self.fail(f"{where}: unknown enum member {p[0][:80]!r}.{p[1][:40]!r}")
            return cls[p[1]]
        if kind == "qdtype" and type(p) is list and len(p) == 6:
            return self._qdtype(p, where)
        self.fail(f"{where}: unknown value kind {str(kind)[:40]!r}")

    def _np_scalar(self, dtype_text: str, payload: Any, where: str) -> Any:
        dt = SCALAR_DTYPES.get(dtype_text)
        if dt is None:
            self.fail(f"{where}: numpy scalar dtype {dtype_text[:20]!r} is not one megq stores")
        if dt.kind == "b" and type(payload) is bool:
            return dt.type(payload)
        if dt.kind in "iu" and type(payload) is int:
            info = np.iinfo(dt)
            if not info.min <= payload <= info.max:
                self.fail(f"{where}: {payload} is out of range for {dt}")
            return dt.type(payload)
        if dt.kind == "f" and type(payload) is str and len(payload) <= _MAX_FLOAT_TEXT:
            try:
                f = float(payload)
            except ValueError:
                self.fail(f"{where}: bad float {payload!r}")
            with np.errstate(over="ignore"):
                out = dt.type(f)
            if float(out) != f and f == f:  # the writer stores exact values only: a rounded one is not megq's
                self.fail(f"{where}: {payload} is not exactly a {dt}")
            return out
        self.fail(f"{where}: malformed numpy scalar")

    def _qdtype(self, p: list, where: str) -> Any:
        from ..quantization.dtype import QuantDtypeMeta, _builtin_quant_dtypes

        name, cname, storage, qmin, qmax, unsigned = p
        if not (type(name) is str and len(name) <= 64 and (cname is None or (type(cname) is str and len(cname) <= 64))
                and storage in _QDTYPE_STORAGE and type(qmin) is int and type(qmax) is int
                and type(unsigned) is bool):
            self.fail(f"{where}: malformed quantized dtype")
        info = np.iinfo(np.dtype(storage))
        if not info.min <= qmin < qmax <= info.max:
            self.fail(f"{where}: quantized dtype range [{qmin}, {qmax}] does not fit {storage}")
        meta = QuantDtypeMeta(name, cname, storage, qmin, qmax, unsigned)
        builtin = _builtin_quant_dtypes.get(name)
        # Builtins keep their identity (a fake quant checks that its observer's dtype *is* its own).
        return builtin if builtin == meta else meta

    def _class(self, key: str) -> Optional[type]:
        if len(key) > 200:
            return None
        return registry.resolve(key) if self.version >= 2 else registry.resolve_legacy(key)

    # -- nodes ----------------------------------------------------------------------------------------------------
    def node(self, index: int, depth: int) -> Any:
        from ..module.module import Module
        from ..tensor import Parameter, Tensor

        if index in self.built:
            return self.built[index]
        node = self.nodes[index]
        where = f"node {index}"
        if type(node) is not dict:
            self.fail(f"{where}: malformed node")
        kind = node.get("kind")
        if kind in ("tensor", "parameter"):
            if set(node) - {"kind", "array", "requires_grad"}:
                self.fail(f"{where}: unexpected fields in a {kind} node")
            arr = self.array(node.get("array"), where)
            obj = Parameter(arr, dtype=arr.dtype) if kind == "parameter" else Tensor(arr, dtype=arr.dtype)
            grad_flag = node.get("requires_grad", False)
            if type(grad_flag) is not bool:
                self.fail(f"{where}: requires_grad is not a bool")
            obj.requires_grad = grad_flag
            self.built[index] = obj
            return obj
        key, attrs = node.get("class"), node.get("attrs")
        if kind != "object" or type(key) is not str or type(attrs) is not dict or len(node) != 3:
            self.fail(f"{where}: malformed object node")
        cls = self._class(key)
        if cls is None or issubclass(cls, enum.Enum):
            self.fail(f"{where}: class {key[:120]!r} is not in megq's registry (megq's own classes and classes "
                      f"registered with megq.serialization.register_serializable)")
        where = f"node {index} ({key})"
        for name in attrs:
            why = registry.check_attr_name(cls, name)
            if why is not None:
                self.fail(f"{where}: attribute {name[:80]!r} is {why}")
        try:
            obj = cls.__new__(cls)
        except TypeError:
            self.fail(f"{where}: class {key!r} cannot be rebuilt from attributes")
        self.built[index] = obj  # before the attributes: cycles and shared children resolve to this object
        if isinstance(obj, Module):
            Module.__init__(obj)
        for name, raw in attrs.items():
            object.__setattr__(obj, name, self.value(raw, depth + 1, f"{where}.{name}"))
        return obj


def _hashable_plain(k: Any) -> bool:
    if k is None or type(k) in (str, int, float, bool) or isinstance(k, np.generic):
        return True
    return type(k) is tuple and all(_hashable_plain(x) for x in k)
