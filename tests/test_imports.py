"""Every public package imports on its own in a fresh interpreter (no import cycles), and the QFloat
model's exact eval path is registered whichever of them comes first."""
from __future__ import annotations

import subprocess
import sys

import pytest

PACKAGES = ["megq", "megq.kernels", "megq.reference", "megq.functional", "megq.module", "megq.module.qat",
            "megq.module.quantized", "megq.quantization", "megq.models", "megq.data", "megq.optimizer",
            "megq.serialization", "megq.qtensor"]


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_first(package):
    code = (f"import {package}\nimport megq.quantization as Q\n"
            "assert len(Q.INTEGER_FORWARD) >= 12, Q.INTEGER_FORWARD")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
