"""megq.interop.from_onnx: torch-exported torchvision-layout models import as fused megq modules, compute ONNX
Runtime's float logits, and go through quantize_qat / quantize / export_onnx; exporter leftovers are folded."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import megq  # noqa: E402
import megq.module as M  # noqa: E402
from megq.autodiff import no_grad  # noqa: E402
from megq.interop import export_onnx, from_onnx  # noqa: E402

from .helpers import calibrated_q, lsb_diff, ort_run  # noqa: E402
from .tv_models import mobilenet_v2, randomize, resnet18  # noqa: E402


def torch_export(model, x, path, dynamic=True, keep_bn=False):
    kw = dict(input_names=["input"], output_names=["output"], opset_version=17)
    if dynamic:
        kw["dynamic_axes"] = {"input": {0: "N"}, "output": {0: "N"}}
    if keep_bn:  # no constant folding: BatchNormalization nodes (and more constant subgraphs) stay in the graph
        kw.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), str(path), dynamo=False, **kw)


def run(model, x):
    with no_grad():
        return model(megq.Tensor(x)).numpy()


@pytest.mark.parametrize("factory,kinds", [
    (resnet18, {"ConvRelu2d": 9, "Conv2d": 11, "Elemwise": 8, "MaxPool2d": 1, "AdaptiveAvgPool2d": 1,
                "Flatten": 1, "Linear": 1}),
    (mobilenet_v2, {"ConvRelu62d": 35, "Conv2d": 17, "Elemwise": 10, "AdaptiveAvgPool2d": 1, "Flatten": 1,
                    "Linear": 1})])
def test_torch_exported_model_equals_ort(factory, kinds, tmp_path):
    ref = randomize(factory(num_classes=12), seed=1)
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    torch_export(ref, x[:1], tmp_path / "m.onnx")
    net = from_onnx(tmp_path / "m.onnx")
    counts = {}
    for attr, _, _, _ in net.program:
        name = type(getattr(net, attr)).__name__
        counts[name] = counts.get(name, 0) + 1
    assert counts == kinds
    assert all(getattr(net, a).method == "ADD" for a, _, _, _ in net.program
               if isinstance(getattr(net, a), M.Elemwise)) or factory is resnet18
    ours, theirs = run(net, x), ort_run(tmp_path / "m.onnx", x)
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()


def test_imported_model_quantizes_and_exports(tmp_path):
    ref = randomize(resnet18(num_classes=10), seed=2)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 48, 48)).astype(np.float32)
    torch_export(ref, x[:1], tmp_path / "f.onnx")
    net = from_onnx(tmp_path / "f.onnx")
    qm = calibrated_q(net, [rng.standard_normal((4, 3, 48, 48)).astype(np.float32) for _ in range(2)])
    assert type(qm.quant).__name__ == "QuantStub" and type(qm.layer1_layer1_0_conv1_Conv).__module__.startswith(
        "megq.module.quantized")
    y = run(qm, x)
    export_onnx(qm, tmp_path / "q.onnx", x)
    assert (ort_run(tmp_path / "q.onnx", x).argmax(1) == y.argmax(1)).all()
    # close to the float model (calibrated int8)
    yf = ort_run(tmp_path / "f.onnx", x)
    cos = (y * yf).sum(1) / np.linalg.norm(y, axis=1) / np.linalg.norm(yf, axis=1)
    assert cos.min() > 0.95


class _Leftovers(torch.nn.Module):
    """A forward as common model code writes it: x.view(x.size(0), -1), F.pad with amounts computed from the input
    shape, a Dropout, an explicit ReLU6 as clamp, a residual add followed by ReLU."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.drop = torch.nn.Dropout(0.1)
        self.fc = torch.nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        p = (x.shape[-1] - x.shape[-1] + 1)  # = 1, computed from the shape: Shape/Gather/Sub/Add in the graph
        x = torch.nn.functional.pad(x, (p, p, p, p))
        x = torch.clamp(self.bn1(self.conv1(x)), 0, 6)
        x = torch.relu(self.conv2(x) + x)
        x = torch.nn.functional.max_pool2d(self.drop(x), 2)
        return self.fc(x.view(x.size(0), -1))


@pytest.mark.parametrize("dynamic,keep_bn", [(True, False), (False, True)])
def test_constant_subgraphs_are_folded(dynamic, keep_bn, tmp_path):
    ref = randomize(_Leftovers(), seed=3)
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    torch_export(ref, x if not dynamic else x[:1], tmp_path / "l.onnx", dynamic, keep_bn)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "l.onnx")).graph.node}
    assert {"Pad", "Shape"} <= ops or {"Pad"} <= ops
    net = from_onnx(tmp_path / "l.onnx")
    kinds = [type(getattr(net, a)).__name__ for a, _, _, _ in net.program]
    first = "ConvBnRelu62d" if keep_bn else "ConvRelu62d"  # torch folds BN into the conv unless told not to
    assert kinds == [first, "Conv2d", "Elemwise", "MaxPool2d", "Flatten", "Linear"], kinds
    conv = getattr(net, net.program[0][0])
    assert getattr(conv, "conv", conv).padding == (1, 1)  # the zero Pad became the conv's padding
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run(net, x), expected, rtol=1e-4, atol=1e-5)


def test_unsupported_op_and_bad_files(tmp_path):
    class WithSigmoid(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return torch.sigmoid(self.conv(x))

    x = np.zeros((1, 3, 4, 4), np.float32)
    torch_export(WithSigmoid().eval(), x, tmp_path / "s.onnx")
    with pytest.raises(ValueError, match=r"node '.*Sigmoid.*' \(Sigmoid\) is not supported"):
        from_onnx(tmp_path / "s.onnx")
    data = (tmp_path / "s.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.onnx.*is not a valid ONNX model"):
        from_onnx(tmp_path / "cut.onnx")
    with pytest.raises(ValueError, match="no such file"):
        from_onnx(tmp_path / "absent.onnx")
    with pytest.raises(TypeError, match="path: expected an ONNX file path"):
        from_onnx(3)


class _Branches(torch.nn.Module):
    """Concat of two branches, average pooling (padding counted and not), an element-wise product, Gemm with
    transB=0 (a MatMul with its bias Add), a ReLU after the linear layer."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(3, 4, 1)
        self.c = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.w = torch.nn.Parameter(torch.randn(8 * 4 * 4, 6) * 0.1)
        self.bias = torch.nn.Parameter(torch.randn(6) * 0.1)

    def forward(self, x):
        y = torch.cat([torch.relu(self.a(x)), self.b(x)], 1)
        y = torch.nn.functional.avg_pool2d(y, 3, 1, 1, count_include_pad=False) * self.c(y)
        y = torch.nn.functional.avg_pool2d(y, 2, 2, 0)
        return torch.relu(torch.flatten(y, 1) @ self.w + self.bias)


def test_concat_pooling_mul_matmul(tmp_path):
    ref = randomize(_Branches(), seed=4)
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    torch_export(ref, x[:1], tmp_path / "b.onnx")
    net = from_onnx(tmp_path / "b.onnx")
    kinds = sorted(type(getattr(net, a)).__name__ for a, _, _, _ in net.program)
    assert kinds == ["AvgPool2d", "AvgPool2d", "Concat", "Conv2d", "Conv2d", "ConvRelu2d", "Elemwise", "Flatten",
                     "LinearRelu"], kinds
    ours, theirs = run(net, x), ort_run(tmp_path / "b.onnx", x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max())
    # quantize it and run the Q model in ONNX Runtime
    rng = np.random.default_rng(4)
    qm = calibrated_q(net, [rng.standard_normal((4, 3, 8, 8)).astype(np.float32) for _ in range(2)])
    export_onnx(qm, tmp_path / "bq.onnx", x)
    yq = run(qm, x)
    # average pooling's .5 ties included (the exporter's tie nudge), ORT gives megq's integers here
    d = lsb_diff(ort_run(tmp_path / "bq.onnx", x), yq, qm.MatMul.layer.out_scale)
    assert np.abs(d).max() <= 1 and (d == 0).mean() >= 0.9
