"""Resource limits that ``megq.load`` checks before it reads or allocates anything."""
from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Limits"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class Limits:
    """Upper bounds for one ``megq.load``; a file over any of them raises ``SerializationError`` naming it.

    The defaults are generous for real models (a QFloat ResNet-50 file holds ~100 MB of arrays in 653 entries and a
    200 KB manifest of ~7,000 JSON containers and 1,111 nodes) yet refuse bombs before they cost memory or time.
    Raise a field for a legitimately bigger file, e.g. ``megq.load(path, limits=Limits(max_total_bytes=64 * GiB))``.

    - ``max_manifest_bytes``: the JSON manifest's uncompressed size.
    - ``max_manifest_values``: JSON objects plus arrays in the manifest (each costs ~100-200 bytes of Python memory
      once parsed; counted on the raw bytes before parsing).
    - ``max_nodes``: entries of the manifest's node table (modules, tensors, objects).
    - ``max_depth``: nesting of values (lists in dicts in objects ...), also bounding the module tree's depth.
    - ``max_arrays``: number of ``.npy`` entries.
    - ``max_array_bytes``: one array's data size.
    - ``max_total_bytes``: the sum of all arrays' data sizes.
    - ``max_compression_ratio``: uncompressed / compressed size of one compressed array entry larger than 1 MiB
      (megq writes arrays uncompressed; deflate reaches ~1000:1 on constant data, which is how bombs are built).
    """

    max_manifest_bytes: int = 16 * MiB
    max_manifest_values: int = 200_000
    max_nodes: int = 50_000
    max_depth: int = 100
    max_arrays: int = 100_000
    max_array_bytes: int = 4 * GiB
    max_total_bytes: int = 16 * GiB
    max_compression_ratio: float = 20.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise ValueError(f"Limits.{f.name}: expected a positive number, got {v!r}")
        if self.max_depth > 400:
            # Each level of nesting costs about two Python stack frames while decoding; past this the interpreter's
            # recursion limit (1000 by default) would be the real bound.
            raise ValueError(f"Limits.max_depth: at most 400, got {self.max_depth}")
