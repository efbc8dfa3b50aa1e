"""Property test: real saved files (float, QFloat, Q models, a checkpoint dict), mutated (truncation, bit flips,
entry removal/duplication/renaming, manifest mutations, huge declared sizes), either raise SerializationError or load
faithfully: what loads re-saves to a file that loads to an equal object (saving is deterministic, so the two saves
are byte-identical). Bounded to a few hundred cases; tools/fuzz_load.py runs the same mutations for longer."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from megq_file_mutations import MUTATIONS, HypothesisChooser

import megq
from megq.serialization.manifest import scan_structure

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def check_load(path, tmp_path):
    """SerializationError, or a faithful load (re-save and reload reproduce the same bytes)."""
    try:
        obj = megq.load(path)
    except megq.SerializationError:
        return "refused"
    megq.save(obj, tmp_path / "again1.megq")
    megq.save(megq.load(tmp_path / "again1.megq"), tmp_path / "again2.megq")
    assert (tmp_path / "again1.megq").read_bytes() == (tmp_path / "again2.megq").read_bytes()
    return "loaded"


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mutated_files_are_refused_or_load_faithfully(saved_models, tmp_path, mutation):
    @FUZZ
    @given(data=st.data(), which=st.sampled_from(sorted(saved_models)))
    def run(data, which):
        mutated = MUTATIONS[mutation](saved_models[which].read_bytes(), HypothesisChooser(data))
        path = tmp_path / "fuzzed.megq"
        path.write_bytes(mutated)
        outcome = check_load(path, tmp_path)
        if mutation == "truncate":
            assert outcome == "refused"

    run()


def test_unmutated_files_load(saved_models, tmp_path):
    for path in saved_models.values():
        assert check_load(path, tmp_path) == "loaded"


def _reference_scan(text):
    in_string = escaped = False
    depth = deepest = opened = 0
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            opened, depth = opened + 1, depth + 1
            deepest = max(deepest, depth)
        elif ch in "}]":
            depth -= 1
    return opened, deepest


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='{}[]"\\ab', max_size=6),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.text(alphabet='{}[]"\\ab', max_size=4), inner, max_size=4), max_leaves=30),
       st.integers(1, 64))
def test_manifest_scanner_matches_a_tokenizer(value, chunk):
    import megq.serialization.manifest as manifest

    text = json.dumps(value, ensure_ascii=random.Random(chunk).random() < 0.5)
    old = manifest._SCAN_CHUNK
    manifest._SCAN_CHUNK = chunk  # chunk borders anywhere, including inside escapes
    try:
        assert scan_structure(text.encode()) == _reference_scan(text)
    finally:
        manifest._SCAN_CHUNK = old


def test_scanner_on_a_real_manifest(saved_models):
    import zipfile

    with zipfile.ZipFile(saved_models["qfloat"]) as z:
        raw = z.read("manifest.json")
    assert scan_structure(raw) == _reference_scan(raw.decode())
    assert np.all(scan_structure(raw)[0] > 100)
