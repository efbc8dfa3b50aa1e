"""Execution plans (megq.module.quantized.plan, megq.kernels.Plan): a planned Q model returns exactly the bits of
the layer-by-layer path (the same model with ``megq.quantization.compile(model, enabled=False)``), on every zoo model
that runs on megq's kernels, at every batch size, thread count and input shape; anything a plan cannot express runs
layer by layer; bad input raises the layer-by-layer path's errors."""
from __future__ import annotations

import copy
import threading

import numpy as np
import pytest

import megq
import megq.kernels as K
import megq.module as M
import megq.quantization as Q
from megq import models
from megq.autodiff import no_grad
from megq.module.quantized.plan import plan_status


def _calibrated(net, shape, qconfig=Q.ema_fakequant_qconfig_per_channel, batches=2, seed=0):
    rng = np.random.default_rng(seed)
    qat = Q.quantize_qat(net.eval(), inplace=False, qconfig=qconfig)
    Q.calibrate(qat, [rng.standard_normal(shape).astype(np.float32) for _ in range(batches)], progress=False)
    return qat


def _qmodel(net, shape, **kw):
    return Q.quantize(_calibrated(net, shape, **kw), inplace=False).eval()


def _layer_by_layer(qmodel):
    return Q.compile(copy.deepcopy(qmodel), enabled=False)


def _planned(qmodel, shape):
    """The plan info for a float input of ``shape`` (None: traced, runs layer by layer; KeyError: never traced)."""
    return plan_status(qmodel)["plans"][(("f", tuple(shape)),)]


def _assert_same(a, b):
    a, b = a.numpy(), b.numpy()
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


_ZOO = {
    "resnet8": (lambda: models.resnet8(num_classes=10), 32),
    "resnet20": (lambda: models.resnet20(num_classes=10), 16),
    "resnet18": (lambda: models.resnet18(num_classes=10), 48),
    "mobilenet_v2": (lambda: models.mobilenet_v2(num_classes=10), 48),
}


@pytest.fixture(scope="module")
def zoo():
    cache = {}

    def get(name):
        if name not in cache:
            make, size = _ZOO[name]
            cache[name] = (_qmodel(make(), (2, 3, size, size)), size)
        return cache[name]

    return get


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", list(_ZOO))
def test_zoo_plan_equals_layer_by_layer(zoo, name, batch, threads):
    qmodel, size = zoo(name)
    reference = _layer_by_layer(qmodel)
    rng = np.random.default_rng(batch * 10 + threads)
    shape = (batch, 3, size, size)
    previous = K.get_num_threads()
    K.set_num_threads(threads)
    try:
        with no_grad():
            for _ in range(3):  # the first call traces, the next ones run the plan
                x = rng.standard_normal(shape).astype(np.float32) * 2
                _assert_same(qmodel(x), reference(x))
    finally:
        K.set_num_threads(previous)
    info = _planned(qmodel, shape)
    assert info is not None and info["steps"] > 10 and info["arena_bytes"] > 0
    assert not any(plan_status(m)["attached"] for m in reference.modules())


def test_bottleneck_resnet50():
    """Bottleneck blocks (1x1 reduce, strided 3x3, 1x1 expand, projection shortcuts)."""
    qmodel = _qmodel(models.resnet50(num_classes=10), (2, 3, 32, 32))
    reference = _layer_by_layer(qmodel)
    rng = np.random.default_rng(12)
    with no_grad():
        for _ in range(2):
            x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
            _assert_same(qmodel(x), reference(x))
    assert _planned(qmodel, (2, 3, 32, 32))["steps"] > 60


@pytest.mark.parametrize("name", ["resnet8", "mobilenet_v2"])
def test_every_isa_path(isa, threads, name):
    """Weights packed and kernels run on each usable ISA (a fresh model: packing happens at the first call)."""
    make, size = _ZOO[name]
    qmodel = _qmodel(make(), (2, 3, 16, 16))
    reference = _layer_by_layer(qmodel)
    rng = np.random.default_rng(11)
    with no_grad():
        for _ in range(2):
            x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
            _assert_same(qmodel(x), reference(x))
    assert _planned(qmodel, (2, 3, 16, 16)) is not None


def test_plan_equals_the_independent_numpy_path():
    """The planned Q model against the QFloat model's exact eval on megq.reference (numpy, no C++ kernel)."""
    qat = _calibrated(models.resnet8(num_classes=10), (2, 3, 16, 16), qconfig=Q.ema_fakequant_qconfig_quint8)
    qmodel = Q.quantize(qat, inplace=False).eval()
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    previous = Q.set_integer_eval_backend("reference")
    try:
        with no_grad():
            expected = qat.eval()(megq.Tensor(x))
            qmodel(x)
            _assert_same(qmodel(x), expected)
    finally:
        Q.set_integer_eval_backend(previous)
    assert _planned(qmodel, x.shape) is not None


def test_input_shape_change_replans(zoo):
    qmodel, _ = zoo("resnet8")
    reference = _layer_by_layer(qmodel)
    rng = np.random.default_rng(5)
    with no_grad():
        for shape in [(1, 3, 24, 24), (2, 3, 20, 28), (1, 3, 24, 24), (4, 3, 20, 28)]:
            x = rng.standard_normal(shape).astype(np.float32)
            _assert_same(qmodel(x), reference(x))
            _assert_same(qmodel(megq.Tensor(x)), reference(megq.Tensor(x)))  # Tensor input: the same plan
            assert _planned(qmodel, shape) is not None
        x = rng.standard_normal((2, 3, 12, 12)).astype(np.float64)  # float64: converted as QuantStub does
        _assert_same(qmodel(x), reference(x))
        _assert_same(qmodel(x), reference(x))


@pytest.mark.parametrize("name", ["resnet8", "mobilenet_v2"])
def test_empty_batch(zoo, name):
    qmodel, size = zoo(name)
    with no_grad():
        y = qmodel(np.zeros((0, 3, size, size), np.float32)).numpy()
    assert y.shape == (0, 10) and y.dtype == np.float32


def _qkey(x):
    """The plan key of a QuantizedTensor input."""
    return ("q", x.data.shape, x.dtype, float(x.scale), x.zero_point, x.qmin, x.qmax)


@pytest.mark.parametrize("name", ["resnet8", "mobilenet_v2"])
def test_float_classifier_plans_the_quantized_parts(name):
    """quantize_classifier=False: a float Linear after the DequantStub. The whole forward cannot be a plan; the
    children holding quantized layers (ResNet's stages, MobileNetV2's features) get plans of their own."""
    net = getattr(models, name)(num_classes=10, quantize_classifier=False)
    qmodel = _qmodel(net, (2, 3, 16, 16))
    reference = _layer_by_layer(qmodel)
    rng = np.random.default_rng(0)
    with no_grad():
        for _ in range(3):
            x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
            _assert_same(qmodel(x), reference(x))
    assert plan_status(qmodel)["plans"][(("f", (2, 3, 16, 16)),)] is None
    parts = [qmodel.layer1, qmodel.layer2, qmodel.layer3] if name == "resnet8" else [qmodel.features]
    for part in parts:
        (key, info), = plan_status(part)["plans"].items()
        assert key[0][0] == "q" and info is not None and info["steps"] >= 3
    assert not plan_status(qmodel.fc if name == "resnet8" else qmodel.classifier)["attached"]
    assert not any(plan_status(m)["attached"] for m in reference.modules())


def test_submodule_plan_takes_quantized_tensors():
    qmodel = _qmodel(models.resnet8(num_classes=10, quantize_classifier=False), (2, 3, 16, 16))
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with no_grad():
        qmodel(x)
        stem = qmodel.conv_bn_relu1(qmodel.quant(x))
        reference = Q.compile(copy.deepcopy(qmodel.layer1), enabled=False)
        for _ in range(2):
            got, want = qmodel.layer1(stem), reference(stem)
            assert np.array_equal(got.data, want.data) and got.data.dtype == want.data.dtype
            assert (got.scale, got.zero_point, got.qmin, got.qmax) == (want.scale, want.zero_point, want.qmin,
                                                                        want.qmax)
        assert plan_status(qmodel.layer1)["plans"][(_qkey(stem),)] is not None
        # another input quantization is another plan
        other = megq.qtensor.QuantizedTensor(stem.data, stem.scale * 2, stem.zero_point, stem.qmin, stem.qmax)
        for _ in range(2):
            assert np.array_equal(qmodel.layer1(other).data, reference(other).data)
        assert plan_status(qmodel.layer1)["plans"][(_qkey(other),)] is not None


def test_float_island_runs_layer_by_layer():
    net = models.resnet8(num_classes=10).eval()
    rng = np.random.default_rng(1)
    qat = Q.quantize_qat(net, inplace=False, qconfig=Q.ema_fakequant_qconfig_per_channel, skip=["layer2"])
    Q.calibrate(qat, [rng.standard_normal((2, 3, 16, 16)).astype(np.float32)], progress=False)
    qmodel = Q.quantize(qat, inplace=False).eval()
    reference = _layer_by_layer(qmodel)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    with no_grad():
        for _ in range(2):
            _assert_same(qmodel(x), reference(x))
    assert _planned(qmodel, x.shape) is None
    assert plan_status(qmodel.layer2)["plans"] == {(_qkey(qmodel.layer1(qmodel.conv_bn_relu1(qmodel.quant(x)))),): None}
    assert all(v is not None for v in plan_status(qmodel.layer3)["plans"].values())


class _OpsNet(M.Module):
    """A user model (its own forward) with every op a plan has a step for: concat, ReLU / ReLU6 modules on
    quantized tensors, MUL, average and max pooling, a flatten of H x W > 1, Linear."""

    def __init__(self):
        super().__init__()
        self.quant, self.dequant = M.QuantStub(), M.DequantStub()
        self.conv1 = M.ConvBn2d(3, 8, 3, padding=1, bias=False)
        self.conv2 = M.ConvBnRelu2d(3, 4, 1)
        self.dw = M.ConvBnRelu62d(12, 12, 3, padding=1, groups=12, bias=False)
        self.cat = M.Concat()
        self.relu, self.relu6 = M.ReLU(), M.ReLU6()
        self.mul, self.add = M.Elemwise("MUL"), M.Elemwise("ADD")
        self.avg = M.AvgPool2d(3, 2, 1, mode="average")
        self.pool = M.MaxPool2d(2)
        self.fc = M.LinearRelu(12 * 4 * 4, 5)

    def forward(self, x):
        x = self.quant(x)
        c = self.relu(self.cat([self.conv1(x), self.conv2(x)], 1))
        d = self.add(self.mul(c, c), self.dw(c))
        e = self.relu6(self.pool(self.avg(d)))
        return self.dequant(self.fc(megq.functional.flatten(e, 1)))


@pytest.mark.parametrize("qconfig", ["ema_fakequant_qconfig", "ema_fakequant_qconfig_per_channel_quint8",
                                     "ema_lowbit_fakequant_qconfig"])
def test_user_model_is_planned_after_compile(qconfig):
    qmodel = _qmodel(_OpsNet(), (2, 3, 16, 16), qconfig=getattr(Q, qconfig))
    reference = _layer_by_layer(qmodel)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    with no_grad():
        _assert_same(qmodel(x), reference(x))
    status = plan_status(qmodel)
    assert "forward is not megq's" in status["refusal"] and not status["plans"]  # its own forward: not automatic
    assert Q.compile(qmodel) is qmodel
    with no_grad():
        for _ in range(3):
            x = rng.standard_normal((3, 3, 16, 16)).astype(np.float32) * 3
            _assert_same(qmodel(x), reference(x))
    info = _planned(qmodel, x.shape)
    assert info is not None and info["steps"] >= 12


class _Unplannable(M.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = M.QuantStub(), M.DequantStub()
        self.conv = M.ConvBnRelu2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(self.quant(x))
        z = megq.functional.reshape(y, (y.shape[0], -1))  # reshape: no plan step
        return self.dequant(z), self.dequant(y)


def test_unsupported_op_runs_layer_by_layer():
    qmodel = Q.compile(_qmodel(_Unplannable(), (2, 3, 8, 8)))
    reference = _layer_by_layer(qmodel)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with no_grad():
        for _ in range(2):
            a, b = qmodel(x), reference(x)
            _assert_same(a[0], b[0])
            _assert_same(a[1], b[1])
    assert _planned(qmodel, x.shape) is None


def test_quantized_and_tuple_outputs():
    class Heads(M.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = M.QuantStub(), M.DequantStub()
            self.conv = M.ConvBnRelu2d(3, 4, 3)

        def forward(self, x):
            y = self.conv(self.quant(x))
            return [y, (self.dequant(y),)]

    qmodel = Q.compile(_qmodel(Heads(), (2, 3, 8, 8)))
    reference = _layer_by_layer(qmodel)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with no_grad():
        qmodel(x)
        got, want = qmodel(x), reference(x)
    assert _planned(qmodel, x.shape) is not None
    assert type(got) is list and type(got[1]) is tuple
    assert got[0].data.dtype == want[0].data.dtype and np.array_equal(got[0].data, want[0].data)
    assert (got[0].scale, got[0].zero_point, got[0].qmin, got[0].qmax) == (
        want[0].scale, want[0].zero_point, want[0].qmin, want[0].qmax)
    _assert_same(got[1][0], want[1][0])


def test_save_load_plans_again(zoo, tmp_path):
    qmodel, size = zoo("resnet8")
    x = np.random.default_rng(4).standard_normal((2, 3, size, size)).astype(np.float32)
    with no_grad():
        expected = _layer_by_layer(qmodel)(x)
        qmodel(x)
        megq.save(qmodel, tmp_path / "q.megq")
        loaded = megq.load(tmp_path / "q.megq").eval()
        assert plan_status(loaded)["attached"] and not plan_status(loaded)["plans"]  # plans are not saved
        for _ in range(2):
            _assert_same(loaded(x), expected)
    assert _planned(loaded, x.shape) is not None


def test_save_load_keeps_submodule_runners(tmp_path):
    qmodel = _qmodel(models.mobilenet_v2(num_classes=10, quantize_classifier=False), (2, 3, 16, 16))
    x = np.random.default_rng(13).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with no_grad():
        expected = _layer_by_layer(qmodel)(x)
        qmodel(x)
        assert plan_status(qmodel.features)["attached"]
        megq.save(qmodel, tmp_path / "q.megq")
        loaded = megq.load(tmp_path / "q.megq").eval()
        for _ in range(3):
            _assert_same(loaded(x), expected)
    (info,) = plan_status(loaded.features)["plans"].values()
    assert info is not None


def test_deepcopy_gets_its_own_plans(zoo):
    qmodel, size = zoo("resnet8")
    x = np.random.default_rng(6).standard_normal((1, 3, size, size)).astype(np.float32)
    with no_grad():
        qmodel(x)
        twin = copy.deepcopy(qmodel)
        assert not plan_status(twin)["plans"]
        _assert_same(twin(x), qmodel(x))
        _assert_same(twin(x), qmodel(x))
    assert _planned(twin, x.shape) is not None


def test_model_changes_invalidate_plans():
    qmodel = _qmodel(models.resnet8(num_classes=10), (2, 3, 16, 16))
    other = _qmodel(models.resnet8(num_classes=10), (2, 3, 16, 16), seed=9)
    x = np.random.default_rng(7).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with no_grad():
        qmodel(x)
        qmodel(x)
        assert _planned(qmodel, x.shape) is not None
        seen = []
        handle = qmodel.layer1.register_forward_hook(lambda m, i, o: seen.append(o))
        qmodel(x)
        assert len(seen) == 1  # a user hook sees the layer: layer by layer
        assert "hook" in plan_status(qmodel)["refusal"]
        handle.remove()
        _assert_same(qmodel(x), _layer_by_layer(qmodel)(x))
        _assert_same(qmodel(x), _layer_by_layer(qmodel)(x))
        assert plan_status(qmodel)["refusal"] is None and _planned(qmodel, x.shape) is not None  # planned again
        assert len(seen) == 1
        qmodel.fc = other.fc  # a replaced layer is used
        expected = _layer_by_layer(qmodel)(x)
        for _ in range(2):
            _assert_same(qmodel(x), expected)
        qmodel.layer2[0] = other.layer2[0]  # Sequential item replaced
        expected = _layer_by_layer(qmodel)(x)
        for _ in range(2):
            _assert_same(qmodel(x), expected)
    qmodel.train()
    with pytest.raises(ValueError, match="model.eval"):
        qmodel(x)


def test_bad_input_raises_like_layer_by_layer(zoo):
    qmodel, size = zoo("resnet8")
    reference = _layer_by_layer(qmodel)
    good = np.random.default_rng(8).standard_normal((1, 3, size, size)).astype(np.float32)
    with no_grad():
        qmodel(good)
        qmodel(good)
        nan = good.copy()
        nan[0, 1, 2, 3] = np.nan
        bad = [np.zeros((1, 4, size, size), np.float32),  # channels
               np.zeros((1, 3, 0, 0), np.float32),  # no pixel for the stem
               np.zeros((3, size, size), np.float32),  # rank
               nan,
               "x", None]
        for x in bad:
            with pytest.raises((TypeError, ValueError)) as want:
                reference(x)
            with pytest.raises(want.type) as got:
                qmodel(x)
            assert str(got.value) == str(want.value)
        with pytest.raises(ValueError, match="NaN"):  # now with a plan for this shape
            qmodel(nan)
        _assert_same(qmodel(good), reference(good))  # and still right afterwards
        ints = (good * 10).astype(np.int8)  # not float32: converted as QuantStub does, on both paths
        _assert_same(qmodel(ints), reference(ints))


def test_concurrent_calls():
    qmodel = _qmodel(models.resnet8(num_classes=10), (2, 3, 16, 16))
    reference = _layer_by_layer(qmodel)
    rng = np.random.default_rng(9)
    xs = [rng.standard_normal((2, 3, 16, 16)).astype(np.float32) for _ in range(4)]
    with no_grad():
        expected = [reference(x).numpy() for x in xs]
    errors = []

    def work(i):
        try:
            with no_grad():
                for _ in range(5):
                    for x, e in zip(xs, expected):
                        if not np.array_equal(qmodel(x).numpy(), e):
                            errors.append(i)
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _planned(qmodel, (2, 3, 16, 16)) is not None


def test_compile_arguments():
    with pytest.raises(TypeError, match="model"):
        Q.compile("net")
    with pytest.raises(TypeError, match="enabled"):
        Q.compile(M.Sequential(), enabled=1)


# -- megq.kernels.Plan directly --------------------------------------------------------------------------------------

def _conv_plan():
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (4, 3, 3, 3), dtype=np.int8)
    packed = K.pack_conv2d_weights(w, None, np.float32(0.01), input_zero_point=0)
    plan = K.Plan()
    x = plan.add_input(2, 3, 8, 8)
    q = plan.add_tensor(2, 8, 8, 3, "int8")
    plan.add_quantize(x, q, 0.05, 0)
    return plan, packed, q


def test_kernel_plan_matches_the_kernels():
    plan, packed, q = _conv_plan()
    y = plan.add_tensor(2, 8, 8, 4, "int8")
    plan.add_conv2d(packed, q, y, (1, 1), (1, 1), (1, 1), "int8", 3, -5, 100)
    z = plan.add_tensor(2, 8, 8, 4, "int8")
    plan.add_clamp(y, z, -2, 50)
    plan.add_quantized_output(z)
    plan.add_dequantize(y, 0.5, 3)
    plan.finalize()
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    got_q, got_f = plan.run([x])
    (again_q, again_f), steps = plan.run([x], profile=True)
    assert np.array_equal(again_q, got_q) and np.array_equal(again_f, got_f)
    assert [name for name, _ in steps] == ["quantize", "conv2d", "clamp", "dequantize"]
    assert all(seconds >= 0 for _, seconds in steps)
    xq = K.quantize(x, 0.05, 0)
    yq = K.conv2d(xq, packed, padding=1, out_zero_point=3, out_min=-5, out_max=100)
    np.testing.assert_array_equal(got_q, np.clip(yq, -2, 50))
    np.testing.assert_array_equal(got_f, K.dequantize(yq, 0.5, 3))


def test_kernel_plan_checks_its_arguments():
    plan, packed, q = _conv_plan()
    wrong = plan.add_tensor(2, 8, 8, 5, "int8")
    with pytest.raises(ValueError, match="out: conv2d produces"):
        plan.add_conv2d(packed, q, wrong, (1, 1), (1, 1), (1, 1), "int8", 0)
    with pytest.raises(ValueError, match="out_dtype"):
        plan.add_conv2d(packed, q, wrong, (1, 1), (1, 1), (1, 1), "int32", 0)
    with pytest.raises(ValueError, match="x: no tensor 99"):
        plan.add_conv2d(packed, 99, wrong, (1, 1), (1, 1), (1, 1), "int8", 0)
    u = plan.add_tensor(2, 8, 8, 3, "uint8")
    with pytest.raises(ValueError, match="x: the weights were packed for int8"):
        plan.add_conv2d(packed, u, wrong, (1, 1), (1, 1), (1, 1), "int8", 0)
    with pytest.raises(ValueError, match="plan: call finalize"):
        plan.run([np.zeros((2, 3, 8, 8), np.float32)])
    plan.add_quantized_output(q)
    plan.finalize()
    with pytest.raises(TypeError, match=r"inputs\[0\]: expected dtype float32"):
        plan.run([np.zeros((2, 3, 8, 8), np.float64)])
    with pytest.raises(ValueError, match=r"inputs\[0\]: expected shape \(2, 3, 8, 8\)"):
        plan.run([np.zeros((2, 3, 8, 9), np.float32)])
    with pytest.raises(ValueError, match=r"inputs\[0\]: expected a C-contiguous"):
        plan.run([np.zeros((2, 3, 8, 16), np.float32)[..., ::2]])
    with pytest.raises(ValueError, match="inputs: expected 1"):
        plan.run([])
    with pytest.raises(ValueError, match="plan: already finalized"):
        plan.add_tensor(1, 1, 1, 1, "int8")


def test_kernel_plan_arena_reuses_dead_tensors():
    """A chain of same-size tensors needs two buffers, not one per tensor."""
    plan = K.Plan()
    x = plan.add_input(1, 64, 16, 16)
    t = plan.add_tensor(1, 16, 16, 64, "int8")
    plan.add_quantize(x, t, 0.1, 0)
    for _ in range(10):
        u = plan.add_tensor(1, 16, 16, 64, "int8")
        plan.add_clamp(t, u, -100, 100 - _)
        t = u
    plan.add_quantized_output(t)
    plan.finalize()
    assert plan.arena_bytes == 2 * 16 * 16 * 64
    x = np.random.default_rng(0).standard_normal((1, 64, 16, 16)).astype(np.float32) * 20
    (got,) = plan.run([x])
    np.testing.assert_array_equal(got, np.clip(K.quantize(x, 0.1, 0), -100, 91))


def test_kernel_plan_quantized_input():
    plan = K.Plan()
    t = plan.add_tensor(2, 4, 4, 8, "uint8")
    assert plan.add_quantized_input(t) == 0
    u = plan.add_tensor(2, 1, 1, 8, "uint8")
    plan.add_global_avg_pool(t, u)
    plan.add_quantized_output(u)
    plan.add_dequantize(t, 0.25, 100)
    plan.finalize()
    x = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 8), dtype=np.uint8)
    pooled, floats = plan.run([x])
    np.testing.assert_array_equal(pooled, K.global_avg_pool2d(x))
    np.testing.assert_array_equal(floats, K.dequantize(x, 0.25, 100))
    with pytest.raises(TypeError, match=r"inputs\[0\]: expected dtype uint8, got int8"):
        plan.run([x.view(np.int8)])
    with pytest.raises(TypeError, match=r"inputs\[0\]: expected dtype int8 or uint8"):
        plan.run([x.astype(np.float32)])
    with pytest.raises(ValueError, match=r"inputs\[0\]: expected shape \(2, 4, 4, 8\)"):
        plan.run([x[:1]])
    with pytest.raises(ValueError, match=r"inputs\[0\]: expected a C-contiguous"):
        plan.run([np.zeros((2, 4, 8, 8), np.uint8)[:, :, ::2]])
    with pytest.raises(ValueError, match="input: no such float input"):
        K.Plan().add_quantize(0, 0, 0.1, 0)


# -- batch splits ------------------------------------------------------------------------------------------------------
def _kernel_plan(qmodel, shape):
    """The megq.kernels.Plan traced for a float input of ``shape``."""
    runner = qmodel.__dict__["_plan_runner"]
    return runner._st().plans[(("f", tuple(shape)),)].plan


def _one_by_one(qmodel, x):
    """Each image alone through the batch-1 plan, one thread, one layer-split pass: the reference a batch split must
    reproduce (an image's bytes do not depend on the batch it is in)."""
    previous = K.get_num_threads()
    K.set_num_threads(1)
    try:
        with no_grad():
            qmodel(x[:1])  # traces the batch-1 plan
            plan = _kernel_plan(qmodel, (1,) + x.shape[1:])
            return np.concatenate([plan.run([x[i:i + 1]], split="layer")[0] for i in range(len(x))])
    finally:
        K.set_num_threads(previous)


_SPLIT_ZOO = {
    "resnet8": (lambda: models.resnet8(num_classes=10), 16),
    "resnet18": (lambda: models.resnet18(num_classes=10), 32),  # max pooling after the stem
    "mobilenet_v2": (lambda: models.mobilenet_v2(num_classes=10), 32),  # depthwise, ReLU6, global pooling
}


@pytest.mark.parametrize("name", list(_SPLIT_ZOO))
def test_batch_split_equals_one_image_at_a_time(name):
    """Every batch size 1..9, split over 1, 2 and 3 threads by layers, by slices of whole images (N not divisible by
    the threads: the leftover images run layer-split), in chunks: the bytes of each image alone."""
    make, size = _SPLIT_ZOO[name]
    qmodel = _qmodel(make(), (2, 3, size, size))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 3, size, size)).astype(np.float32) * 2
    want = _one_by_one(qmodel, x)
    assert _planned(qmodel, (1, 3, size, size)) is not None
    reference = _layer_by_layer(qmodel)
    with no_grad():
        np.testing.assert_array_equal(want[:3].reshape(3, -1), reference(x[:3]).numpy())
    previous = K.get_num_threads()
    try:
        for n in range(1, 10):
            with no_grad():
                qmodel(x[:n])  # traces the batch-n plan
            plan = _kernel_plan(qmodel, (n, 3, size, size))
            assert plan.splittable and _planned(qmodel, (n, 3, size, size))["splittable"]
            for threads in (1, 2, 3):
                K.set_num_threads(threads)
                for split, chunk in (("auto", 0), ("layer", 0), ("batch", 0), ("batch", 1), ("layer", 2),
                                     ("batch", 2)):
                    (got,) = plan.run([x[:n]], split=split, chunk=chunk)
                    assert np.array_equal(got.view(np.uint32), want[:n].view(np.uint32)), (n, threads, split, chunk)
                with no_grad():  # the model's own call (auto)
                    got = qmodel(x[:n]).numpy()
                assert np.array_equal(got.view(np.uint32), want[:n].reshape(got.shape).view(np.uint32))
    finally:
        K.set_num_threads(previous)


def test_batch_split_every_step_kind():
    """A plan with every step kind (concat, clamps, MUL/ADD, average and max pooling, a flatten, Linear) splits by
    images to the same bytes, at every batch size and thread count."""
    qmodel = Q.compile(_qmodel(_OpsNet(), (2, 3, 16, 16)))
    rng = np.random.default_rng(8)
    x = rng.standard_normal((7, 3, 16, 16)).astype(np.float32) * 3
    want = _one_by_one(qmodel, x)
    reference = _layer_by_layer(qmodel)
    with no_grad():
        np.testing.assert_array_equal(want.reshape(len(x), -1), reference(x).numpy())
    previous = K.get_num_threads()
    try:
        for n in (2, 3, 5, 7):
            with no_grad():
                qmodel(x[:n])
            plan = _kernel_plan(qmodel, (n, 3, 16, 16))
            names = {name for name, _ in plan.run([x[:n]], profile=True)[1]}
            assert {"concat", "clamp", "mul", "add", "avg_pool", "max_pool", "flatten", "gemm"} <= names
            for threads in (1, 2, 3):
                K.set_num_threads(threads)
                for split, chunk in (("layer", 0), ("batch", 0), ("batch", 1), ("layer", 1), ("auto", 0)):
                    (got,) = plan.run([x[:n]], split=split, chunk=chunk)
                    np.testing.assert_array_equal(got, want[:n], err_msg=f"{n} {threads} {split} {chunk}")
    finally:
        K.set_num_threads(previous)


def test_kernel_plan_batch_split_quantized_input_and_outputs():
    """Quantized inputs and outputs are sliced by images too (copied in and out per slice)."""
    def build(n):
        plan = K.Plan()
        t = plan.add_tensor(n, 4, 4, 8, "uint8")
        plan.add_quantized_input(t)
        u = plan.add_tensor(n, 1, 1, 8, "uint8")
        plan.add_global_avg_pool(t, u)
        plan.add_quantized_output(u)
        plan.add_dequantize(t, 0.25, 100)
        plan.finalize()
        return plan

    x = np.random.default_rng(3).integers(0, 256, (5, 4, 4, 8), dtype=np.uint8)
    plan = build(5)
    previous = K.get_num_threads()
    try:
        for threads in (1, 2, 3):
            K.set_num_threads(threads)
            for split, chunk in (("layer", 0), ("batch", 0), ("batch", 1), ("layer", 2)):
                pooled, floats = plan.run([x], split=split, chunk=chunk)
                np.testing.assert_array_equal(pooled, K.global_avg_pool2d(x))
                np.testing.assert_array_equal(floats, K.dequantize(x, 0.25, 100))
    finally:
        K.set_num_threads(previous)
    with pytest.raises(ValueError, match="split: expected 'auto', 'layer' or 'batch'"):
        plan.run([x], split="image")
    with pytest.raises(ValueError, match="chunk: expected 0"):
        plan.run([x], chunk=-1)


def test_kernel_plan_mixed_batches_do_not_split():
    """Tensors of different N (two unrelated inputs) cannot be sliced the same way: run() keeps whole tensors."""
    plan = K.Plan()
    a, b = plan.add_input(2, 3, 4, 4), plan.add_input(3, 3, 4, 4)
    qa, qb = plan.add_tensor(2, 4, 4, 3, "int8"), plan.add_tensor(3, 4, 4, 3, "int8")
    plan.add_quantize(a, qa, 0.1, 0)
    plan.add_quantize(b, qb, 0.2, 1)
    plan.add_quantized_output(qa)
    plan.add_quantized_output(qb)
    plan.finalize()
    assert not plan.splittable
    rng = np.random.default_rng(4)
    xa, xb = rng.standard_normal((2, 3, 4, 4)).astype(np.float32), rng.standard_normal((3, 3, 4, 4)).astype(np.float32)
    previous = K.get_num_threads()
    try:
        K.set_num_threads(2)
        for split in ("auto", "batch", "layer"):
            ga, gb = plan.run([xa, xb], split=split, chunk=1)
            np.testing.assert_array_equal(ga, K.quantize(xa, 0.1, 0))
            np.testing.assert_array_equal(gb, K.quantize(xb, 0.2, 1))
    finally:
        K.set_num_threads(previous)


def test_batch_split_concurrent_plans():
    """Two plans of one model (two batch sizes) run from several Python threads at once, each splitting its batch
    (one of them gets the pool, the other runs its slices serially): every result stays exact."""
    qmodel = _qmodel(models.mobilenet_v2(num_classes=10), (2, 3, 16, 16))
    rng = np.random.default_rng(10)
    xs = [rng.standard_normal((n, 3, 16, 16)).astype(np.float32) for n in (2, 3, 4, 5)]
    expected = [_one_by_one(qmodel, x).reshape(len(x), -1) for x in xs]
    errors = []
    previous = K.get_num_threads()
    K.set_num_threads(2)

    def work(i):
        try:
            with no_grad():
                for _ in range(4):
                    for x, e in zip(xs[i % 2::2], expected[i % 2::2]):
                        if not np.array_equal(qmodel(x).numpy(), e):
                            errors.append(i)
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        K.set_num_threads(previous)
    assert errors == []
    with no_grad():  # a shape whose every call met another thread tracing ran layer by layer: trace it now
        for x, e in zip(xs, expected):
            assert np.array_equal(qmodel(x).numpy(), e)
    assert all(_planned(qmodel, x.shape)["splittable"] for x in xs)


@pytest.mark.parametrize("name", ["resnet8", "mobilenet_v2"])
def test_batch_split_every_isa_path(isa, name):
    """The batch split on each usable ISA's kernels (weights packed for it: a fresh model per ISA)."""
    make, _ = _SPLIT_ZOO[name]
    qmodel = _qmodel(make(), (2, 3, 16, 16))
    x = np.random.default_rng(13).standard_normal((5, 3, 16, 16)).astype(np.float32) * 2
    want = _one_by_one(qmodel, x)
    previous = K.get_num_threads()
    try:
        for n in (2, 3, 5):
            with no_grad():
                qmodel(x[:n])
            plan = _kernel_plan(qmodel, (n, 3, 16, 16))
            for threads in (2, 3):
                K.set_num_threads(threads)
                for split, chunk in (("layer", 0), ("batch", 0), ("batch", 1)):
                    (got,) = plan.run([x[:n]], split=split, chunk=chunk)
                    assert np.array_equal(got.view(np.uint32), want[:n].view(np.uint32)), (n, threads, split)
    finally:
        K.set_num_threads(previous)
