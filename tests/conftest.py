"""Shared pytest fixtures (every ISA path the CPU can run, thread counts) and the strict-skip switch.

``MEGQ_TEST_STRICT=1`` (set by ``.ci/run``) turns every skip into a failure: in CI each optional extra is installed,
so a skip there means a missing install step or a broken extension, never something to ignore.
"""
from __future__ import annotations

import os

import pytest

import megq.kernels as _kernels

USABLE_ISAS = _kernels.cpu_info()["usable"]
STRICT = os.environ.get("MEGQ_TEST_STRICT", "") == "1"


@pytest.fixture(params=USABLE_ISAS)
def isa(request):
    """Forces each usable ISA path in turn (scalar, avx2, avx512vnni, ...)."""
    with _kernels.use_isa(request.param):
        yield request.param


@pytest.fixture(params=[1, 2])
def threads(request):
    """Runs the test at 1 and at 2 kernel threads."""
    previous = _kernels.get_num_threads()
    _kernels.set_num_threads(request.param)
    yield request.param
    _kernels.set_num_threads(previous)


@pytest.fixture(scope="session", autouse=True)
def _single_threaded_blas():
    """The suite runs numpy's BLAS on one thread, asked for explicitly (megq never changes BLAS threading itself):
    on a machine shared with other busy processes OpenBLAS's spinning threads make float training many times slower.
    Without threadpoolctl (installed by the test extra) the BLAS keeps its own setting."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        yield
        return
    import megq.functional as F

    with F.limit_blas_threads(1):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"MEGQ_TEST_STRICT=1: unexpected skip: {report.longrepr}"
