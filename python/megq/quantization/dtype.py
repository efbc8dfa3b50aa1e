"""Quantized dtype descriptions (MegEngine's ``QuantDtypeMeta`` and ``_builtin_quant_dtypes``).

A ``QuantDtypeMeta`` behaves as a singleton: ``copy``/``deepcopy``/``pickle`` of a builtin return the same object,
so the identity checks of ``FakeQuantize`` (observer dtype *is* fake-quant dtype) survive ``quantize_qat(...,
inplace=False)`` and save/load.
"""
from __future__ import annotations

from collections import namedtuple
from typing import Any, Dict, Optional, Union

import numpy as np

__all__ = ["QuantDtypeMeta", "qint8", "qint8_narrow", "quint8", "qint4", "quint4", "qint32", "qint1", "qint2",
           "quint2", "get_dtype_meta", "create_quantized_dtype", "get_scale", "get_zero_point", "is_quantize",
           "_builtin_quant_dtypes"]

_QuantDtypeMetaBase = namedtuple("QuantDtypeMeta", ["name", "cname", "np_dtype_str", "qmin", "qmax", "is_unsigned"])


def _builtin(name: str) -> "QuantDtypeMeta":
    return _builtin_quant_dtypes[name]


class QuantDtypeMeta(_QuantDtypeMetaBase):
    """``QuantDtypeMeta(name, cname, np_dtype_str, qmin, qmax, is_unsigned)``: a quantized dtype's integer range.

    ``np_dtype_str`` is the storage type ("int8", "uint8", "int32"); ``qmin``/``qmax`` the range used by observers
    and fake quant. (The brief's short form ``(name, np_dtype_str, qmin, qmax)`` is these fields minus the runtime
    ``cname`` and the derived ``is_unsigned``.)
    """

    __slots__ = ()

    def __new__(cls, name: str, cname: Optional[str], np_dtype_str: str, qmin: int, qmax: int,
                is_unsigned: Optional[bool] = None) -> "QuantDtypeMeta":
        if int(qmin) >= int(qmax):
            raise ValueError(f"QuantDtypeMeta {name!r}: qmin ({qmin}) must be < qmax ({qmax})")
        if is_unsigned is None:
            is_unsigned = np_dtype_str.startswith("u")
        return super().__new__(cls, name, cname, np_dtype_str, int(qmin), int(qmax), bool(is_unsigned))

    def __copy__(self) -> "QuantDtypeMeta":
        return self

    def __deepcopy__(self, memo: Any) -> "QuantDtypeMeta":
        return self

    def __reduce__(self):
        if _builtin_quant_dtypes.get(self.name) == self:
            return (_builtin, (self.name,))
        return (QuantDtypeMeta, tuple(self))

    def __repr__(self) -> str:
        return f"QuantDtypeMeta({self.name!r}, qmin={self.qmin}, qmax={self.qmax}, storage={self.np_dtype_str})"


_builtin_quant_dtypes: Dict[str, QuantDtypeMeta] = {
    "quint8": QuantDtypeMeta("quint8", "Quantized8Asymm", "uint8", 0, 255),
    "qint8": QuantDtypeMeta("qint8", "QuantizedS8", "int8", -128, 127),
    # Only the observer / fake-quant range is narrow; the runtime dtype is plain QuantizedS8.
    "qint8_narrow": QuantDtypeMeta("qint8_narrow", "QuantizedS8", "int8", -127, 127),
    "quint4": QuantDtypeMeta("quint4", "Quantized4Asymm", "uint8", 0, 15),
    "qint4": QuantDtypeMeta("qint4", "QuantizedS4", "int8", -8, 7),
    "qint1": QuantDtypeMeta("qint1", "QuantizedS1", "int8", 0, 1),
    "qint32": QuantDtypeMeta("qint32", "QuantizedS32", "int32", -(2 ** 31), 2 ** 31 - 1),
    "quint2": QuantDtypeMeta("quint2", None, "uint8", 0, 3),
    "qint2": QuantDtypeMeta("qint2", None, "int8", -2, 1),
}

qint8 = _builtin_quant_dtypes["qint8"]
qint8_narrow = _builtin_quant_dtypes["qint8_narrow"]
quint8 = _builtin_quant_dtypes["quint8"]
qint4 = _builtin_quant_dtypes["qint4"]
quint4 = _builtin_quant_dtypes["quint4"]
qint32 = _builtin_quant_dtypes["qint32"]
qint1 = _builtin_quant_dtypes["qint1"]
qint2 = _builtin_quant_dtypes["qint2"]
quint2 = _builtin_quant_dtypes["quint2"]


def get_dtype_meta(dtype: Union[str, QuantDtypeMeta], owner: str = "dtype") -> QuantDtypeMeta:
    """Resolve a builtin name ("qint8", "qint8_narrow", "quint8", "qint4", "quint4", "qint32", ...) or pass a
    ``QuantDtypeMeta`` through. Unknown names raise ``ValueError`` listing the valid ones."""
    if isinstance(dtype, QuantDtypeMeta):
        return dtype
    if isinstance(dtype, str):
        if dtype not in _builtin_quant_dtypes:
            raise ValueError(f"{owner}: unknown quantized dtype {dtype!r}; valid: {sorted(_builtin_quant_dtypes)}")
        return _builtin_quant_dtypes[dtype]
    raise TypeError(f"{owner}: dtype must be a str or QuantDtypeMeta, got {type(dtype).__name__}")


def create_quantized_dtype(dtype_meta: QuantDtypeMeta, scale: Any, zp: Any = None) -> np.dtype:
    """numpy dtype (storage ``np_dtype_str``) carrying ``{"mgb_dtype": {"name", "scale"[, "zero_point"]}}`` metadata,
    as MegEngine. Per-tensor ``scale`` becomes a float; a per-channel one stays a float32 array. Unsigned dtypes need
    an integral zero point inside the range; signed dtypes must have ``zp=None`` (``ValueError`` otherwise)."""
    meta: Dict[str, Any] = {"name": dtype_meta.cname or dtype_meta.name}
    s = np.asarray(scale, np.float32)
    meta["scale"] = float(s) if s.ndim == 0 else s.copy()
    if dtype_meta.is_unsigned:
        if zp is None:
            raise ValueError(f"{dtype_meta.name}: an unsigned quantized dtype needs a zero point")
        z = np.asarray(zp)
        if np.any(z != np.round(z)) or np.any(z < dtype_meta.qmin) or np.any(z > dtype_meta.qmax):
            raise ValueError(f"{dtype_meta.name}: zero point {zp!r} must be an integer in "
                             f"[{dtype_meta.qmin}, {dtype_meta.qmax}]")
        meta["zero_point"] = int(z) if z.ndim == 0 else z.astype(np.int32)
    elif zp is not None and np.any(np.asarray(zp) != 0):
        raise ValueError(f"{dtype_meta.name}: a signed quantized dtype cannot carry a zero point (got {zp!r})")
    return np.dtype(dtype_meta.np_dtype_str, metadata={"mgb_dtype": meta})


def is_quantize(dtype: Any) -> bool:
    """Whether ``dtype`` is a quantized numpy dtype made by :func:`create_quantized_dtype`."""
    md = getattr(np.dtype(dtype), "metadata", None) if dtype is not None else None
    return bool(md) and "mgb_dtype" in md


def get_scale(dtype: Any) -> Any:
    """The scale stored in a quantized numpy dtype."""
    if not is_quantize(dtype):
        raise ValueError(f"get_scale: {dtype!r} is not a quantized dtype")
    return np.dtype(dtype).metadata["mgb_dtype"]["scale"]


def get_zero_point(dtype: Any) -> Any:
    """The zero point stored in a quantized numpy dtype (None for signed dtypes)."""
    if not is_quantize(dtype):
        raise ValueError(f"get_zero_point: {dtype!r} is not a quantized dtype")
    return np.dtype(dtype).metadata["mgb_dtype"].get("zero_point")
