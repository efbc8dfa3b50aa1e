"""Turning a Python object tree into the manifest's JSON values and a table of arrays (the writing half of the
format described in docs/serialization.md)."""
from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Any, Dict, List

import numpy as np

from . import registry

__all__ = ["Writer", "SCALAR_DTYPES"]

# numpy scalar types stored inline in JSON: each value is exact as a Python bool/int or as the repr of a float64
# (float16/32 values are float64 values). Other numpy scalars (complex, long double) are refused at save.
SCALAR_DTYPES = {np.dtype(t).str: np.dtype(t) for t in
                 (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
                  np.float16, np.float32, np.float64)}
_KEY_TYPES = (str, int, float, bool, type(None), tuple, np.generic)


def _describe(v: Any) -> str:
    return f"{type(v).__module__}.{type(v).__qualname__}"


class Writer:
    """Collects nodes (tensors and registered objects, each once, so sharing and cycles survive) and arrays."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.arrays: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self.array_names: Dict[int, str] = {}
        self.node_ids: Dict[int, int] = {}
        self.nodes: List[Any] = []
        self._alive: List[Any] = []  # keeps every id()-keyed object alive, so ids cannot be reused mid-save

    def manifest_arrays(self) -> Dict[str, list]:
        return {name: [a.dtype.str, list(a.shape)] for name, a in self.arrays.items()}

    def array(self, a: np.ndarray, where: str) -> str:
        if id(a) in self.array_names:
            return self.array_names[id(a)]
        if a.dtype.hasobject or a.dtype.kind not in "biufc" or a.dtype.fields is not None:
            raise TypeError(f"{where}: arrays of dtype {a.dtype} cannot be saved (numeric dtypes only; object "
                            f"arrays would need pickle)")
        name = f"a{len(self.arrays)}"
        self.arrays[name] = a
        self.array_names[id(a)] = name
        self._alive.append(a)
        return name

    def value(self, v: Any, depth: int, where: str) -> Any:
        from ..module.module import Module
        from ..quantization.dtype import QuantDtypeMeta
        from ..tensor import Parameter, Tensor

        if depth > self.max_depth:
            raise ValueError(f"{where}: nested more than {self.max_depth} levels deep (Limits.max_depth)")
        t = type(v)
        if v is None or t is bool or t is str:
            return v
        if t is int:
            return {"int": v}
        if t is float:
            return {"float": repr(v)}
        if isinstance(v, np.generic):
            dt = SCALAR_DTYPES.get(v.dtype.str)
            if dt is None:
                raise TypeError(f"{where}: numpy scalars of dtype {v.dtype} cannot be saved; use a 0-d array")
            payload = bool(v) if dt.kind == "b" else int(v) if dt.kind in "iu" else repr(float(v))
            return {"np": [dt.str, payload]}
        if t is np.ndarray:
            return {"array": self.array(v, where)}
        if isinstance(v, QuantDtypeMeta):
            return {"qdtype": [v.name, v.cname, v.np_dtype_str, v.qmin, v.qmax, v.is_unsigned]}
        if isinstance(v, enum.Enum):
            key = registry.key_of(t)
            if key is None:
                raise TypeError(f"{where}: enum {_describe(v)} is not registered; use "
                                f"megq.serialization.register_serializable")
            return {"enum": [key, v.name]}
        if t is list or t is tuple:
            return {t.__name__: [self.value(x, depth + 1, f"{where}[{i}]") for i, x in enumerate(v)]}
        if t is dict or t is OrderedDict:
            kind = "dict" if t is dict else "odict"
            if all(type(k) is str for k in v):
                return {kind: {k: self.value(x, depth + 1, f"{where}[{k!r}]") for k, x in v.items()}}
            items = []
            for k, x in v.items():
                if not isinstance(k, _KEY_TYPES) or (isinstance(k, tuple) and type(k) is not tuple):
                    raise TypeError(f"{where}: dict keys of type {_describe(k)} cannot be saved")
                items.append([self.value(k, depth + 1, f"{where} key"), self.value(x, depth + 1, f"{where}[{k!r}]")])
            return {kind + "_items": items}
        if t is Tensor or t is Parameter:
            return {"ref": self._node(v, depth, where)}
        key = registry.key_of(t)
        if key is not None:
            return {"ref": self._node(v, depth, where, key)}
        if isinstance(v, Module):
            raise TypeError(f"{where}: module class {_describe(v)} is not registered; decorate it with "
                            f"@megq.serialization.register_serializable so megq.load may rebuild it")
        raise TypeError(f"{where}: cannot save a value of type {_describe(v)}; register its class with "
                        f"megq.serialization.register_serializable if it is plain data")

    def _node(self, v: Any, depth: int, where: str, key: str = "") -> int:
        from ..tensor import Parameter

        if id(v) in self.node_ids:
            return self.node_ids[id(v)]
        index = len(self.nodes)
        self.node_ids[id(v)] = index
        self._alive.append(v)
        self.nodes.append(None)
        if not key:
            node: Dict[str, Any] = {"kind": "parameter" if type(v) is Parameter else "tensor",
                                    "array": self.array(v.numpy(), where)}
            if v.requires_grad:  # gradients are not saved; the flag is (a GradManager sets it on attach)
                node["requires_grad"] = True
        else:
            node = {"kind": "object", "class": key, "attrs": self.attrs(v, key, depth + 1, where)}
        self.nodes[index] = node
        return index

    def attrs(self, obj: Any, key: str, depth: int, where: str) -> Dict[str, Any]:
        cls = type(obj)
        skip = set(registry.transient_attrs(cls))
        # Until every class declares _transient_attrs, packed-kernel caches are recognised by their name.
        legacy_prefix = "_packed" if not hasattr(cls, "_transient_attrs") else None
        slots, has_dict = registry.declared_slots(cls)
        items = list(vars(obj).items()) if has_dict else []
        items += [(s, getattr(obj, s)) for s in slots if hasattr(obj, s)]
        out: Dict[str, Any] = {}
        for name, v in items:
            if name in skip or (legacy_prefix and name.startswith(legacy_prefix)):
                continue
            why = registry.check_attr_name(cls, name)
            if why is not None:
                raise TypeError(f"{where}.{name}: attribute of {key} cannot be saved: {why}")
            out[name] = self.value(v, depth, f"{where}.{name}")
        return out
