"""Finite-difference gradient checking shared by the float-layer tests (float64 throughout)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

import megq
from megq.autodiff import GradManager


def analytic_and_numeric(fn: Callable[..., "megq.Tensor"], arrays: Sequence[np.ndarray], seed: int = 0,
                         eps: float = 1e-6):
    """Gradients of ``sum(fn(*inputs) * r)`` (r fixed random) w.r.t. each input: from the tape and by central
    differences computed here with plain numpy evaluations of ``fn``."""
    rng = np.random.default_rng(seed)
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    tensors = [megq.Tensor(a) for a in arrays]
    gm = GradManager().attach(tensors)
    with gm:
        out = fn(*tensors)
        r = rng.standard_normal(out.shape)
        gm.backward(out, r)
    analytic = [t.grad.numpy() if t.grad is not None else np.zeros_like(a) for t, a in zip(tensors, arrays)]

    def value(vals):
        return float((np.asarray(fn(*[megq.Tensor(v) for v in vals]).numpy(), dtype=np.float64) * r).sum())

    numeric = []
    for i, a in enumerate(arrays):
        g = np.zeros_like(a)
        it = np.nditer(a, flags=["multi_index"])
        for _ in it:
            idx = it.multi_index
            plus = [v.copy() for v in arrays]
            minus = [v.copy() for v in arrays]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            g[idx] = (value(plus) - value(minus)) / (2 * eps)
        numeric.append(g)
    return analytic, numeric


def assert_grads_close(fn, arrays, rtol: float = 1e-5, atol: float = 1e-6, seed: int = 0) -> None:
    """Assert the tape's gradients of ``fn`` match central differences for every input."""
    analytic, numeric = analytic_and_numeric(fn, arrays, seed)
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        np.testing.assert_allclose(a, n, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")
