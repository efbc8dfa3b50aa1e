"""The closed class registry: the only classes a megq file can make the loader instantiate.

A file names a class by a registry key (a string); resolving it is a dictionary lookup. Nothing a file says is ever
imported, looked up as an attribute, or called. The registry is filled once, at first use, from megq's own public
packages (the classes of their ``__all__``, plus the Module subclasses their sub-modules define) and from classes the
user registers explicitly with :func:`register_serializable`.
"""
from __future__ import annotations

import enum
import importlib
import re
import sys
import threading
from typing import Any, Callable, Dict, Optional, Tuple, Union, overload

__all__ = ["register_serializable", "key_of", "resolve", "resolve_legacy", "check_attr_name", "transient_attrs",
           "declared_slots"]

# megq's packages whose classes files may name, imported at first use (a fixed list: a file cannot add to it).
_SOURCES = ("megq.module", "megq.module.qat", "megq.module.quantized", "megq.quantization", "megq.models")
# Record (non-Module, non-Enum) classes of those packages that are stored attribute by attribute.
_RECORDS = ("IntegerLayer", "QParams", "LSQParams")
# Classes whose key must not change when they move between megq packages (IntegerLayer moved from
# megq.module.quantized to megq.quantization): files name them by this key wherever they live.
_CANONICAL = {"IntegerLayer": "megq.quantization.IntegerLayer"}
# Version-1 files named classes by "module:qualname"; these old paths no longer match a class's current location.
_LEGACY_PATHS = {"megq.module.quantized.params:IntegerLayer": "megq.quantization.IntegerLayer"}
# Bound on key length, so that error messages quoting a key stay short.
_MAX_KEY = 200

_lock = threading.RLock()
_builtin: Dict[str, type] = {}
_user: Dict[str, type] = {}
_key_of: Dict[type, str] = {}
_legacy: Dict[str, type] = {}
_filled = False


def _fill() -> None:
    global _filled
    if _filled:
        return
    with _lock:
        if _filled:
            return
        from ..module.module import Module

        found: Dict[str, type] = {}
        for package in _SOURCES:
            mod = importlib.import_module(package)
            for name in getattr(mod, "__all__", ()):
                cls = getattr(mod, name, None)
                if not isinstance(cls, type):
                    continue
                if issubclass(cls, (Module, enum.Enum)) or name in _RECORDS:
                    key = _CANONICAL.get(name, f"{package}.{name}")
                    if cls not in found.values():
                        found[key] = cls
        # Module subclasses that megq's packages build but do not export (e.g. MobileNetV2's InvertedResidual):
        # keyed by their defining module and qualified name.
        for modname, mod in list(sys.modules.items()):
            if mod is None or not any(modname == p or modname.startswith(p + ".") for p in _SOURCES):
                continue
            for cls in list(vars(mod).values()):
                if (isinstance(cls, type) and issubclass(cls, Module) and cls.__module__ == modname
                        and "<" not in cls.__qualname__ and cls not in found.values()):
                    found[f"{modname}.{cls.__qualname__}"] = cls
        _builtin.update(found)
        for key, cls in found.items():
            _key_of.setdefault(cls, key)
            _legacy[f"{cls.__module__}:{cls.__qualname__}"] = cls
        for old, key in _LEGACY_PATHS.items():
            if key in found:
                _legacy.setdefault(old, found[key])
        _filled = True


def _register(cls: type, key: Optional[str]) -> type:
    if not isinstance(cls, type):
        raise TypeError(f"cls: expected a class, got {type(cls).__name__}")
    if key is None:
        key = f"{cls.__module__}:{cls.__qualname__}"
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY:
        raise TypeError(f"key: expected a non-empty str of at most {_MAX_KEY} characters, got {key!r}")
    if issubclass(cls, tuple) and not issubclass(cls, enum.Enum):
        raise TypeError(f"cls: {cls.__qualname__} is a tuple subclass; its state is not attributes, so it cannot be "
                        f"rebuilt safely")
    _fill()
    with _lock:
        if key in _builtin:
            raise ValueError(f"key: {key!r} is one of megq's own classes and cannot be re-registered")
        old_key = _key_of.get(cls)
        if old_key is not None and old_key != key:
            raise ValueError(f"cls: {cls.__qualname__} is already registered under key {old_key!r}")
        previous = _user.get(key)
        if previous is not None and previous is not cls:
            # Re-running a class definition (a notebook cell, a reloaded module) makes a new class object of the
            # same name; the newest definition wins, the old one is unregistered.
            _key_of.pop(previous, None)
        _user[key] = cls
        _key_of[cls] = key
    return cls


@overload
def register_serializable(cls: type, key: Optional[str] = None) -> type: ...


@overload
def register_serializable(cls: None = None, key: Optional[str] = None) -> Callable[[type], type]: ...


def register_serializable(cls: Optional[type] = None, key: Optional[str] = None) -> Union[type, Callable[[type], type]]:
    """Allow ``megq.save``/``megq.load`` to store and rebuild instances of ``cls``.

    ``cls`` is a user-defined Module subclass, an Enum, or a plain record class whose state is its attributes
    (``__dict__`` and/or ``__slots__``). Loading rebuilds it with ``cls.__new__(cls)`` (then ``Module.__init__`` for
    modules) and assigns the saved attributes; ``__init__`` is not called, so the class must not rely on it beyond the
    attributes it stores. ``key`` is the name files use for it (default ``"module:qualname"``, the name version-1
    files used); pick a stable one if the class may move. Works as a decorator, bare or as
    ``@register_serializable(key="myproj.Block")``.
    """
    if cls is None:
        return lambda c: _register(c, key)
    return _register(cls, key)


def key_of(cls: type) -> Optional[str]:
    """The registry key of ``cls`` (exact type, subclasses are not covered), or None if it is not registered."""
    _fill()
    return _key_of.get(cls)


def resolve(key: Any) -> Optional[type]:
    """The class registered under ``key``, or None. A dictionary lookup, nothing else."""
    _fill()
    if not isinstance(key, str):
        return None
    return _builtin.get(key) or _user.get(key)


def resolve_legacy(path: Any) -> Optional[type]:
    """For version-1 files, which named classes by ``"module:qualname"``: a lookup among registered classes only."""
    _fill()
    if not isinstance(path, str):
        return None
    return _legacy.get(path) or _user.get(path)


# A Module's hooks are callables registered at run time; they are never saved and a file cannot set them.
_MODULE_TRANSIENT = ("_forward_hooks", "_forward_pre_hooks")


def transient_attrs(cls: type) -> Tuple[str, ...]:
    """Attribute names never saved: the class's ``_transient_attrs`` (caches derived from the saved state, such as
    packed kernel weights) and, for modules, their hooks."""
    from ..module.module import Module

    names = getattr(cls, "_transient_attrs", None)
    out = tuple(names) if isinstance(names, (tuple, list, frozenset, set)) else ()
    return out + _MODULE_TRANSIENT if issubclass(cls, Module) else out


def declared_slots(cls: type) -> Tuple[Tuple[str, ...], bool]:
    """(slot names over the MRO, whether instances have a ``__dict__``)."""
    slots = []
    has_dict = False
    for base in cls.__mro__:
        s = base.__dict__.get("__slots__")
        if s is None:
            if base is not object:
                has_dict = True
            continue
        if isinstance(s, str):
            s = (s,)
        for name in s:
            if name == "__dict__":
                has_dict = True
            elif name != "__weakref__":
                slots.append(name)
    return tuple(slots), has_dict


_DUNDER = re.compile(r"^__.*__$")


def check_attr_name(cls: type, name: Any) -> Optional[str]:
    """None if instances of ``cls`` may hold a saved attribute ``name``, else why not.

    Refused: non-strings, dunder names, transient names, and any name the class itself defines as something other
    than a plain data default (a method, property, class, or other descriptor), so a file can neither shadow
    behaviour nor reach a setter. For a class without ``__dict__`` only its declared slots are accepted.
    """
    if not isinstance(name, str) or not name or len(name) > _MAX_KEY or _DUNDER.match(name):
        return "not an attribute name megq stores"
    if name in transient_attrs(cls):
        return "a transient attribute (never saved)"
    slots, has_dict = declared_slots(cls)
    for base in cls.__mro__:
        if name in base.__dict__:
            attr = base.__dict__[name]
            if name in slots and type(attr).__name__ == "member_descriptor":
                return None
            if isinstance(attr, type) or hasattr(type(attr), "__get__") or hasattr(type(attr), "__set__"):
                return f"defined by class {cls.__qualname__} as {type(attr).__name__}"
            break
    if not has_dict and name not in slots:
        return f"not a declared slot of {cls.__qualname__}"
    return None
