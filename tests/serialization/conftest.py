"""Fixtures of the serialization tests; puts this folder on sys.path so tests import megq_file_helpers."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from megq_file_helpers import make_qfloat_and_q, make_small_net  # noqa: E402

import megq  # noqa: E402


@pytest.fixture
def small_net():
    return make_small_net()


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory):
    """Paths of a saved float, QFloat and Q model and of a checkpoint dict (written once per session)."""
    d = tmp_path_factory.mktemp("saved")
    qnet, qmodel = make_qfloat_and_q()
    paths = {"float": d / "float.megq", "qfloat": d / "qfloat.megq", "q": d / "q.megq", "ckpt": d / "ckpt.megq"}
    megq.save(make_small_net(), paths["float"])
    megq.save(qnet, paths["qfloat"])
    megq.save(qmodel, paths["q"])
    megq.save({"epoch": 3, "state_dict": make_small_net().state_dict(), "names": ("a", None, 1.5, True)},
              paths["ckpt"])
    return paths


