"""The one error type of megq's model files."""
from __future__ import annotations

__all__ = ["SerializationError"]


class SerializationError(ValueError):
    """A megq file is malformed, truncated, over a resource limit, or names something the loader will not
    rebuild. The message names the file and the entry, node or value at fault.

    It subclasses ``ValueError`` so code written against earlier megq versions (which raised ``ValueError``)
    keeps working.
    """
