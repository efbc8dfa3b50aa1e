"""megq's model and checkpoint files: ``megq.save(obj, path)`` / ``megq.load(path)``.

A file is a zip archive holding one JSON manifest (the object tree) and uncompressed ``.npy`` arrays. Loading is
safe on untrusted files: nothing is unpickled, imported or executed; classes come from a closed registry (megq's
own classes and those registered with :func:`register_serializable`); every size is bounded by :class:`Limits`
before it is read; every problem is a :class:`SerializationError`. See docs/serialization.md for the format and
the threat model.

The package is split by purpose: ``api`` (save/load), ``registry`` (the classes a file may name), ``limits``,
``archive`` (bounded zip and .npy reading), ``manifest`` (bounded JSON parsing), ``encode``/``decode`` (values),
``atomic`` (atomic file replacement), ``errors``.
"""
from .api import FORMAT, VERSION, load, save
from .errors import SerializationError
from .limits import Limits
from .registry import register_serializable

__all__ = ["FORMAT", "Limits", "SerializationError", "VERSION", "load", "register_serializable", "save"]
