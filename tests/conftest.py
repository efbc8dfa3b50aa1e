"""Shared pytest fixtures: every ISA path this machine can run, and thread counts."""
from __future__ import annotations

import pytest

try:
    import megq.kernels as _kernels
    USABLE_ISAS = _kernels.cpu_info()["usable"]
except ImportError:  # the compiled extension is not built: kernel tests are skipped
    _kernels = None
    USABLE_ISAS = []


@pytest.fixture(params=USABLE_ISAS or ["unavailable"])
def isa(request):
    """Forces each usable ISA path in turn (scalar, avx2, avx512vnni, ...)."""
    if _kernels is None:
        pytest.skip("megq._C is not built")
    with _kernels.use_isa(request.param):
        yield request.param


@pytest.fixture(params=[1, 2])
def threads(request):
    """Runs the test at 1 and at 2 kernel threads."""
    if _kernels is None:
        pytest.skip("megq._C is not built")
    previous = _kernels.get_num_threads()
    _kernels.set_num_threads(request.param)
    yield request.param
    _kernels.set_num_threads(previous)
