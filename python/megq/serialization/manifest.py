"""Parsing the JSON manifest within bounds: the number of JSON containers and their nesting are counted on the raw
bytes before ``json.loads`` builds any Python object."""
from __future__ import annotations

import json
from typing import Any, Callable, Tuple

import numpy as np

from .limits import Limits

__all__ = ["parse_manifest", "json_depth_limit", "scan_structure"]

# Bytes scanned per step: bounds the scanner's own working memory (~30 bytes of numpy temporaries per byte).
_SCAN_CHUNK = 256 * 1024
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPENERS, _CLOSERS = (ord("{"), ord("[")), (ord("}"), ord("]"))


def scan_structure(data: bytes) -> Tuple[int, int]:
    """(JSON objects + arrays opened, deepest nesting) of ``data``, counting brackets outside strings only.

    A quote ends or starts a string unless an odd run of backslashes precedes it. Processed in fixed-size numpy
    chunks with the string/backslash/depth state carried across, so it costs little memory and no Python objects
    per token. For valid JSON the counts are exact; for invalid JSON they match what ``json.loads`` sees before the
    first error, which is all it would build.
    """
    in_string = False
    backslashes = 0  # length of the run of backslashes ending just before the chunk
    depth = deepest = opened = 0
    for start in range(0, len(data), _SCAN_CHUNK):
        a = np.frombuffer(data, np.uint8, count=min(_SCAN_CHUNK, len(data) - start), offset=start)
        n = len(a)
        idx = np.arange(n, dtype=np.int32)
        is_bs = a == _BACKSLASH
        last_other = np.where(is_bs, -1, idx)
        np.maximum.accumulate(last_other, out=last_other)
        run = np.empty(n, np.int32)  # backslashes immediately before each byte
        run[0] = backslashes
        run[1:] = idx[:-1] - last_other[:-1] + np.where(last_other[:-1] < 0, backslashes, 0)
        quote = (a == _QUOTE) & (run % 2 == 0)
        toggles = np.cumsum(quote, dtype=np.int32)
        inside = ((toggles - quote) % 2 == 1) != in_string  # inside a string before this byte
        outside = ~inside & ~quote
        opens = ((a == _OPENERS[0]) | (a == _OPENERS[1])) & outside
        closes = ((a == _CLOSERS[0]) | (a == _CLOSERS[1])) & outside
        opened += int(np.count_nonzero(opens))
        level = np.cumsum(opens.astype(np.int8) - closes.astype(np.int8), dtype=np.int32) + depth
        deepest = max(deepest, int(level.max(initial=depth)))
        depth = int(level[-1])
        in_string = in_string != bool(toggles[-1] % 2)
        backslashes = backslashes + n if last_other[-1] < 0 else n - 1 - int(last_other[-1])
    return opened, deepest


def json_depth_limit(limits: Limits) -> int:
    """JSON nesting allowed for a manifest whose values nest at most ``limits.max_depth`` deep: each value level is
    at most two JSON levels ({"list": [...]}), plus the manifest's own frame."""
    return 2 * limits.max_depth + 8


def parse_manifest(data: bytes, limits: Limits, fail: Callable[[str], Any]) -> Any:
    opened, depth = scan_structure(data)
    if opened > limits.max_manifest_values:
        fail(f"the manifest has {opened} JSON objects/arrays (limit {limits.max_manifest_values} under "
             f"Limits.max_manifest_values)")
    depth_limit = json_depth_limit(limits)
    if depth > depth_limit:
        fail(f"the manifest nests {depth} levels deep (limit {depth_limit} from Limits.max_depth)")

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        fail("the manifest is not UTF-8")
    del data

    def no_constants(name: str) -> Any:
        fail(f"the manifest contains {name}, which is not JSON")

    try:
        return json.loads(text, parse_constant=no_constants)
    except ValueError as e:  # json.JSONDecodeError, and over-long integer literals
        if type(e).__name__ == "SerializationError":
            raise
        fail(f"the manifest is not JSON ({e})")
