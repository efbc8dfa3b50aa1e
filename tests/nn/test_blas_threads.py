"""megq leaves process-wide settings alone unless asked: float training changes neither the BLAS's threading nor
the allocator (megq.autodiff.tune_malloc is an explicit call), and
``megq.functional.limit_blas_threads(n)`` caps it only inside its block."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import megq.functional as F


def blas_threads() -> list:
    from threadpoolctl import threadpool_info

    return [(info["filepath"], info["num_threads"]) for info in threadpool_info() if info["user_api"] == "blas"]


def test_float_training_step_leaves_blas_threads_and_malloc_alone():
    # A fresh interpreter: what megq does on first use (its thread pool starts lazily) is what this checks.
    code = textwrap.dedent("""
        import numpy as np
        from threadpoolctl import threadpool_info
        before = [(i["filepath"], i["num_threads"]) for i in threadpool_info()]
        import megq, megq.functional as F, megq.module as M
        from megq.autodiff import GradManager
        net = M.Sequential(M.ConvBnRelu2d(3, 32, 3, padding=1), M.Flatten(), M.Linear(32 * 32 * 32, 10))
        gm = GradManager().attach(net.parameters())
        x = megq.Tensor(np.random.default_rng(0).standard_normal((32, 3, 32, 32)).astype(np.float32))
        with gm:
            loss = F.cross_entropy(net(x), megq.Tensor(np.zeros(32, np.int64)))
            gm.backward(loss)
        after = [(i["filepath"], i["num_threads"]) for i in threadpool_info()]
        assert before and before == after, (before, after)
        import megq._malloc
        assert megq._malloc._DONE == [False], "a GradManager recording tuned glibc's malloc behind the caller's back"
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def two_blas_threads():
    """A BLAS setting other than 1 around the test (the suite itself runs single-threaded BLAS, see conftest)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        assert before, "numpy's BLAS is not visible to threadpoolctl"
        yield before


def test_limit_blas_threads_is_scoped(two_blas_threads):
    a = np.random.default_rng(0).standard_normal((64, 64))
    with F.limit_blas_threads(1):
        assert all(n == 1 for _, n in blas_threads())
        np.testing.assert_allclose(a @ a.T, (a @ a.T).T, rtol=1e-12)  # BLAS still works inside
    assert blas_threads() == two_blas_threads
    with pytest.raises(RuntimeError):
        with F.limit_blas_threads(1):
            raise RuntimeError("restored on the way out too")
    assert blas_threads() == two_blas_threads


def test_limit_blas_threads_works_as_a_decorator(two_blas_threads):
    @F.limit_blas_threads(1)
    def inside():
        return blas_threads()

    assert all(n == 1 for _, n in inside())
    assert blas_threads() == two_blas_threads


@pytest.mark.parametrize("n, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError),
                                      ("2", TypeError), (None, TypeError)])
def test_limit_blas_threads_checks_n(n, error):
    with pytest.raises(error, match="n: expected an int >= 1"):
        with F.limit_blas_threads(n):
            pass


def test_limit_blas_threads_without_threadpoolctl(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # makes ``import threadpoolctl`` fail
    with pytest.raises(ImportError, match="pip install threadpoolctl"):
        with F.limit_blas_threads(1):
            pass
