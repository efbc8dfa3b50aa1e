"""Checkpoints the way MegEngine users write them: dicts/lists of state_dicts, arrays, numbers, strings, None, bools,
tuples round-trip exactly (types, dtypes, bits, sharing); optimizers (SGD, Adam, AdamW) and LR schedules resume
bit-exactly from a saved state_dict."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest

import megq
import megq.functional as F
import megq.module as M
from megq import optimizer as optim
from megq.autodiff import GradManager


def assert_same(a, b, where="obj"):
    """Exact equality of types and values: floats bit for bit (NaN and -0.0 included), arrays dtype+shape+bytes."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), where
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), where
    elif isinstance(a, float):
        assert math.copysign(1, a) == math.copysign(1, b) and (a == b or (a != a and b != b)), where
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, megq.Tensor):
        assert a.requires_grad == b.requires_grad
        assert_same(a.numpy(), b.numpy(), where)
    else:
        assert a == b, where


def test_checkpoint_of_plain_values_round_trips_exactly(tmp_path):
    rng = np.random.default_rng(0)
    shared = rng.standard_normal((2, 3)).astype(np.float32)
    obj = {
        "epoch": 3, "big": 2 ** 100, "neg": -7, "lr": 0.1, "nan": float("nan"), "inf": -float("inf"), "zero": -0.0,
        "name": "résumé \u2603", "none": None, "flags": (True, False), "list": [1, [2, (3, "x")], {}],
        "ordered": OrderedDict([("b", 1), ("a", 2)]), "int_keys": {0: "a", 5: "b", -1: None},
        "tuple_keys": {(1, "x"): 1.5, None: 2, 2.5: 3, True: 4},
        "scalars": [np.float32(1.1), np.float64(-2.2), np.float16(0.5), np.int8(-3), np.uint64(2 ** 64 - 1),
                    np.int64(-2 ** 63), np.bool_(True), np.int32(7)],
        "arrays": [np.arange(6, dtype=np.int8).reshape(2, 3), np.zeros((0, 4), np.float64), np.array(3.5),
                   np.array([True, False]), np.array([1 + 2j], np.complex64), np.arange(4, dtype=">i4"),
                   rng.standard_normal((3, 4)).astype(np.float32)[:, ::2]],
        "shared": [shared, shared],
        "tensors": [megq.Tensor(np.ones(3, np.float16), dtype=np.float16), megq.Parameter(np.arange(3.0))],
    }
    megq.save(obj, tmp_path / "ckpt.megq")
    back = megq.load(tmp_path / "ckpt.megq")
    assert_same(obj, back)
    assert back["shared"][0] is back["shared"][1]  # one array saved once stays one array


@pytest.mark.parametrize("root", [None, True, 3, -1.5, "text", [1, 2], (1,), np.arange(3), np.float32(2)])
def test_any_supported_root_round_trips(tmp_path, root):
    megq.save(root, tmp_path / "r.megq")
    assert_same(root, megq.load(tmp_path / "r.megq"))


def test_state_dict_checkpoint_loads_into_a_fresh_model(tmp_path):
    src = M.Sequential(M.Conv2d(1, 2, 3), M.BatchNorm2d(2))
    megq.save({"epoch": 1, "state_dict": src.state_dict()}, tmp_path / "c.megq")
    ckpt = megq.load(tmp_path / "c.megq")
    assert isinstance(ckpt["state_dict"], OrderedDict)
    dst = M.Sequential(M.Conv2d(1, 2, 3), M.BatchNorm2d(2))
    dst.load_state_dict(ckpt["state_dict"])
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert_same(a, b, k)


@pytest.mark.parametrize("bad,match", [
    ({1.5j: 1}, "dict keys of type builtins.complex"),
    ({"x": {1, 2}}, r"obj\['x'\]: cannot save a value of type builtins.set"),
    ({"x": np.array(["a"])}, "arrays of dtype <U1 cannot be saved"),
    ({"x": np.longdouble(1)}, "numpy scalars of dtype float128"),
    ({"x": np.array([None], object)}, "object arrays would need pickle"),
])
def test_unsupported_checkpoint_values_name_their_place(tmp_path, bad, match):
    with pytest.raises(TypeError, match=match):
        megq.save(bad, tmp_path / "x.megq")
    assert list(tmp_path.iterdir()) == []


# -- optimizer resume ----------------------------------------------------------------------------------------------

def _net(seed):
    rng = np.random.default_rng(seed)
    net = M.Sequential(M.Linear(4, 8), M.ReLU(), M.Linear(8, 3))
    for p in net.parameters():  # a different init per seed: loading must overwrite all of it
        p.set_value(rng.standard_normal(p.shape).astype(np.float32))
    return net


def _batches(n):
    rng = np.random.default_rng(42)
    return [(rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 3, 5)) for _ in range(n)]


def _train(net, opt, batches, sched=None):
    gm = GradManager().attach(net.parameters())
    for x, y in batches:
        with gm:
            loss = F.cross_entropy(net(megq.Tensor(x)), megq.Tensor(y))
            gm.backward(loss)
        opt.step()
        opt.clear_grad()
        if sched is not None:
            sched.step()


OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, 0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda ps: optim.Adam(ps, 1e-2, weight_decay=1e-3),
    "adamw": lambda ps: optim.AdamW(ps, 1e-2),
    "sgd_groups": lambda ps: optim.SGD([{"params": ps[:2], "lr": 0.1}, {"params": ps[2:]}], 0.02, momentum=0.5),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_training_resumes_bit_exactly_from_a_checkpoint(tmp_path, name):
    n, k = 7, 3
    batches = _batches(n)
    make = OPTIMIZERS[name]

    ref = _net(0)
    ref_opt = make(list(ref.parameters()))
    ref_sched = optim.MultiStepLR(ref_opt, [2, 5], gamma=0.5)
    _train(ref, ref_opt, batches, ref_sched)

    first = _net(0)
    first_opt = make(list(first.parameters()))
    first_sched = optim.MultiStepLR(first_opt, [2, 5], gamma=0.5)
    _train(first, first_opt, batches[:k], first_sched)
    megq.save({"epoch": k, "model": first.state_dict(), "optimizer": first_opt.state_dict(),
               "scheduler": first_sched.state_dict()}, tmp_path / "resume.megq")
    del first, first_opt, first_sched

    ckpt = megq.load(tmp_path / "resume.megq")
    net = _net(1)
    opt = make(list(net.parameters()))
    sched = optim.MultiStepLR(opt, [2, 5], gamma=0.5)
    net.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    assert ckpt["epoch"] == k
    _train(net, opt, batches[k:], sched)
    for (key, a), (_, b) in zip(ref.state_dict().items(), net.state_dict().items()):
        assert a.tobytes() == b.tobytes(), key


def test_optimizer_state_dict_layout_and_errors():
    net = _net(0)
    opt = optim.SGD(list(net.parameters()), 0.1, momentum=0.9)
    _train(net, opt, _batches(1))
    sd = opt.state_dict()
    assert sorted(sd) == ["param_groups", "state"]
    assert sd["param_groups"][0]["params"] == [0, 1, 2, 3]
    assert sd["param_groups"][0]["momentum"] == 0.9 and sorted(sd["state"]) == [0, 1, 2, 3]
    params = list(net.parameters())
    np.testing.assert_array_equal(sd["state"][0]["momentum_buffer"], opt._state[id(params[0])]["momentum_buffer"])
    assert sd["state"][0]["momentum_buffer"] is not opt._state[id(params[0])]["momentum_buffer"]  # a copy
    other = optim.SGD(list(_net(0).parameters())[:2], 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="param group 0 does not hold parameters 0..1"):
        other.load_state_dict(sd)
    with pytest.raises(TypeError, match="keys 'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})
    bad = {"state": {0: {"momentum_buffer": np.zeros(3)}}, "param_groups": sd["param_groups"]}
    with pytest.raises(ValueError, match="state 'momentum_buffer' of parameter 0 has shape"):
        opt.load_state_dict(bad)


def test_slotted_records_and_passive_observers_round_trip(tmp_path):
    """QParams has __slots__ (no __dict__): its slots are saved and only they are accepted back."""
    import megq.quantization as Q

    qp = Q.create_qparams(Q.QuantMode.ASYMMERTIC, Q.quint8, np.array([0.5, 0.25], np.float32),
                          np.array([3, 4], np.int32))
    obs = Q.PassiveObserver(dtype="qint8")
    obs.set_qparams(Q.create_qparams(Q.QuantMode.SYMMERTIC, Q.qint8, np.array(0.1, np.float32), None))
    megq.save({"qp": qp, "observer": obs}, tmp_path / "q.megq")
    back = megq.load(tmp_path / "q.megq")
    assert type(back["qp"]) is Q.QParams and back["qp"] == qp
    assert back["qp"].dtype_meta is Q.quint8 and back["qp"].mode is Q.QuantMode.ASYMMERTIC
    assert back["qp"].scale.tobytes() == qp.scale.tobytes() and back["qp"].zero_point.dtype == np.int32
    assert type(back["observer"]) is Q.PassiveObserver
    assert back["observer"].get_qparams() == obs.get_qparams()
