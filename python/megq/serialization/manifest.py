"""Parsing the JSON manifest within bounds: the number of JSON containers and their nesting are counted on the raw
bytes (strings blanked out first) before ``json.loads`` builds any Python object."""
from __future__ import annotations

import json
import re
from typing import Any, Callable

import numpy as np

from .limits import Limits

__all__ = ["parse_manifest", "json_depth_limit"]

# A JSON string: quote, then runs of ordinary characters and escape pairs, then quote (linear, no backtracking).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"{}[]")


def json_depth_limit(limits: Limits) -> int:
    """JSON nesting allowed for a manifest whose values nest at most ``limits.max_depth`` deep: each value level is
    at most two JSON levels ({"list": [...]}), plus the manifest's own frame."""
    return 2 * limits.max_depth + 8


def parse_manifest(data: bytes, limits: Limits, fail: Callable[[str], Any]) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        fail("the manifest is not UTF-8")
    skeleton = _STRING.sub(b'""', data)
    brackets = skeleton.translate(None, _NOT_BRACKETS)
    opened = brackets.count(b"{") + brackets.count(b"[")
    if opened > limits.max_manifest_values:
        fail(f"the manifest has {opened} JSON objects/arrays (limit {limits.max_manifest_values} under "
             f"Limits.max_manifest_values)")
    depth_limit = json_depth_limit(limits)
    if opened > depth_limit:
        steps = np.frombuffer(brackets, np.uint8)
        delta = np.where((steps == ord("{")) | (steps == ord("[")), 1, -1).astype(np.int32)
        depth = int(np.cumsum(delta).max(initial=0))
        if depth > depth_limit:
            fail(f"the manifest nests {depth} levels deep (limit {depth_limit} from Limits.max_depth)")
    del skeleton, brackets

    def no_constants(name: str) -> Any:
        fail(f"the manifest contains {name}, which is not JSON")

    try:
        return json.loads(text, parse_constant=no_constants)
    except ValueError as e:  # json.JSONDecodeError, and over-long integer literals
        if type(e).__name__ == "SerializationError":
            raise
        fail(f"the manifest is not JSON ({e})")
