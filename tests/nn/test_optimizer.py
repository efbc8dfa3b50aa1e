"""Optimizers and LR schedules against update rules written out in numpy here."""
import math

import numpy as np
import pytest

import megq
from megq import optimizer as optim


def _run(opt_factory, steps=3):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(5).astype(np.float32)
    grads = [rng.standard_normal(5).astype(np.float32) for _ in range(steps)]
    p = megq.Parameter(p0.copy())
    opt = opt_factory([p])
    for g in grads:
        p.grad = megq.Tensor(g)
        opt.step()
        opt.clear_grad()
        assert p.grad is None
    return p0.astype(np.float64), grads, p.numpy()


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd(nesterov):
    lr, mom, wd = 0.1, 0.9, 0.01
    p, grads, got = _run(lambda ps: optim.SGD(ps, lr, momentum=mom, nesterov=nesterov, weight_decay=wd))
    buf = None
    for g in grads:
        d = g + wd * p
        buf = d if buf is None else mom * buf + d
        p = p - lr * (d + mom * buf if nesterov else buf)
    np.testing.assert_allclose(got, p, rtol=1e-5)


def test_sgd_plain_and_errors():
    p, grads, got = _run(lambda ps: optim.SGD(ps, 0.5))
    np.testing.assert_allclose(got, p - 0.5 * sum(grads), rtol=1e-5)
    with pytest.raises(ValueError, match="lr"):
        optim.SGD([megq.Parameter([1.0])], -1.0)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([megq.Parameter([1.0])], 0.1, nesterov=True)
    with pytest.raises(ValueError, match="params"):
        optim.SGD([], 0.1)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_adamw(decoupled):
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-8, 0.1
    cls = optim.AdamW if decoupled else optim.Adam
    p, grads, got = _run(lambda ps: cls(ps, lr, (b1, b2), eps, weight_decay=wd))
    m = v = np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    np.testing.assert_allclose(got, p, rtol=1e-5)


def test_param_groups_and_schedules():
    a, b = megq.Parameter([1.0]), megq.Parameter([1.0])
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    sched = optim.MultiStepLR(opt, [2, 4], gamma=0.5)
    lrs = []
    for _ in range(5):
        lrs.append(sched.get_lr())
        sched.step()
    assert lrs == [[0.1, 1.0], [0.1, 1.0], [0.05, 0.5], [0.05, 0.5], [0.025, 0.25]]

    opt = optim.SGD([a], lr=1.0)
    cos = optim.CosineAnnealingLR(opt, 10, eta_min=0.0)
    got = []
    for _ in range(12):
        got.append(opt.param_groups[0]["lr"])
        cos.step()
    np.testing.assert_allclose(got, [0.5 * (1 + math.cos(math.pi * min(s, 10) / 10)) for s in range(12)])

    opt = optim.SGD([a], lr=2.0)
    after = optim.CosineAnnealingLR(opt, 4)
    warm = optim.LinearWarmup(opt, 4, start_factor=0.0, after=after)
    got = []
    for _ in range(6):
        got.append(opt.param_groups[0]["lr"])
        warm.step()
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 1.5, 2.0, 2.0 * 0.5 * (1 + math.cos(math.pi / 4))])
    with pytest.raises(ValueError, match="t_max"):
        optim.CosineAnnealingLR(opt, 0)
