"""The main job: `megq demo` trains, quantizes (PTQ and QAT), converts and compares on the embedded digits."""
from __future__ import annotations

import subprocess
import sys

from megq.demo import run


def test_demo_numbers():
    r = run(epochs=4, qat_epochs=1, verbose=False)
    assert r["Float"]["accuracy"] >= 0.95
    for name in ("PTQ", "QAT"):
        q = r[f"{name} Q"]
        assert q["int8_identical"] == 1.0 and q["prediction_agreement"] == 1.0
        assert q["accuracy"] == r[f"{name} QFloat"]["accuracy"]
        assert q["accuracy"] >= r["Float"]["accuracy"] - 0.02
        assert r["size_bytes"][f"{name} Q"] < 0.5 * r["size_bytes"]["Float"]
    assert set(r["latency"]) == {"float_batch1_ms", "q_batch1_ms", "float_batch360_ms", "q_batch360_ms"}


def test_cli_runs_and_reports():
    out = subprocess.run([sys.executable, "-m", "megq", "info"], capture_output=True, text=True, check=True)
    assert '"active"' in out.stdout
    out = subprocess.run([sys.executable, "-m", "megq", "demo", "--epochs", "1", "--qat-epochs", "1", "--json"],
                         capture_output=True, text=True, check=True)
    assert '"QAT Q"' in out.stdout and '"int8_identical": 1.0' in out.stdout
