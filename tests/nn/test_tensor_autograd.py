"""Tensor defaults and the GradManager tape."""
import numpy as np
import pytest

import megq
import megq.functional as F
from megq.autodiff import GradManager, no_grad


def test_tensor_dtypes():
    assert megq.Tensor([1.0, 2.0]).dtype == np.float32
    assert megq.Tensor([1, 2]).dtype == np.int32
    assert megq.Tensor(np.zeros(3, np.float64)).dtype == np.float64
    assert megq.Parameter(np.zeros(3, np.float64)).dtype == np.float32
    t = megq.Tensor(np.arange(6.0).reshape(2, 3))
    assert t.shape == (2, 3) and t.ndim == 2 and t.size == 6 and len(t) == 2
    assert t[1, 2].item() == 5.0


def test_backward_fills_only_attached():
    w, x = megq.Parameter([2.0, 3.0]), megq.Tensor([4.0, 5.0])
    gm = GradManager().attach([w])
    with gm:
        loss = (w * x).sum()
        gm.backward(loss)
    np.testing.assert_allclose(w.grad.numpy(), [4.0, 5.0])
    assert x.grad is None


def test_grads_accumulate_and_diamond():
    w = megq.Parameter([1.5])
    gm = GradManager().attach(w)
    for _ in range(2):
        with gm:
            a = w * 2.0
            loss = (a * a + a).sum()  # d/dw = (2a + 1) * 2 = 4*2w + 2 at w=1.5 -> 14
            gm.backward(loss)
    np.testing.assert_allclose(w.grad.numpy(), [28.0])


def test_no_tape_outside_recording():
    w = megq.Parameter([1.0])
    GradManager().attach(w)
    y = w * 3.0
    assert y._node is None
    gm = GradManager().attach(w)
    with gm:
        with no_grad():
            z = w * 3.0
        assert z._node is None
        assert (w * 3.0)._node is not None


def test_callbacks_and_seed():
    w = megq.Parameter([1.0, 2.0])
    gm = GradManager().attach(w, callbacks=[lambda p, g: g * 10.0])
    with gm:
        y = w * w
        gm.backward(y, np.array([1.0, 0.5], np.float32))
    np.testing.assert_allclose(w.grad.numpy(), [20.0, 20.0])


def test_backward_errors():
    w = megq.Parameter([1.0])
    gm = GradManager().attach(w)
    with gm:
        with pytest.raises(TypeError, match="y"):
            gm.backward(np.ones(1))
        with pytest.raises(ValueError, match="dy"):
            gm.backward(w * 2.0, np.ones(3))
    with pytest.raises(TypeError, match="params"):
        GradManager().attach([1.0])


def test_detach_and_dropout_backward():
    w = megq.Parameter(np.ones((50, 40)))
    gm = GradManager().attach(w)
    megq.random.seed(1)
    with gm:
        y = F.dropout(w * 1.0, 0.5)
        gm.backward(y.sum())
    # gradient equals the applied mask, which is out / in
    np.testing.assert_allclose(w.grad.numpy(), y.numpy())
    assert w.detach()._node is None and not w.detach().requires_grad
