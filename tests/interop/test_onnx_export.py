"""megq.interop.export_onnx: float models match ONNX Runtime's float run; Q models (QDQ) run on ORT's int8 kernels
and reproduce megq's int8 values except exact .5 ties (ORT rounds half to even, megq half away from zero)."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import megq  # noqa: E402
import megq.module as M  # noqa: E402
import megq.quantization as Q  # noqa: E402
from megq import models  # noqa: E402
from megq.autodiff import no_grad  # noqa: E402
from megq.interop import OPSET, export_onnx  # noqa: E402

from .helpers import calibrated_q, lsb_diff, ort_run, per_layer_agreement, randomize_megq  # noqa: E402

RNG = np.random.default_rng(0)


def run(model, x):
    with no_grad():
        return model(megq.Tensor(x)).numpy()


def data(shape, n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("factory,size", [(models.resnet18, 64), (models.mobilenet_v2, 64), (models.resnet8, 32)])
def test_float_model_matches_ort(factory, size, tmp_path):
    net = randomize_megq(factory(num_classes=10), seed=1)
    x = data((2, 3, size, size))[0]
    proto = export_onnx(net, tmp_path / "f.onnx", x)
    assert proto.opset_import[0].version == OPSET == 17
    ours, ref = run(net, x), ort_run(tmp_path / "f.onnx", x)
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()
    # the batch dimension stays free
    x5 = data((5, 3, size, size), seed=2)[0]
    np.testing.assert_allclose(ort_run(tmp_path / "f.onnx", x5), run(net, x5), rtol=1e-4,
                               atol=1e-4 * np.abs(ref).max())


def _optimized_ops(path, tmp_path):
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}


@pytest.mark.parametrize("factory,size,qconfig", [
    (models.resnet8, 32, "calibration_qconfig_per_channel"), (models.resnet18, 64, "calibration_qconfig_per_channel"),
    (models.mobilenet_v2, 64, "calibration_qconfig_per_channel"), (models.resnet8, 32, "ema_fakequant_qconfig_quint8")])
def test_q_model_matches_ort_int8(factory, size, qconfig, tmp_path):
    net = randomize_megq(factory(num_classes=10), seed=2)
    qm = calibrated_q(net, data((4, 3, size, size), seed=3), getattr(Q, qconfig))
    x = data((8, 3, size, size), seed=4)[0]
    path = tmp_path / "q.onnx"
    export_onnx(qm, path, x)
    ops = _optimized_ops(path, tmp_path)
    assert "QLinearConv" in ops and "Conv" not in ops and "Gemm" not in ops  # int8 kernels, nothing float left
    out_scale = (qm.fc if hasattr(qm, "fc") else qm.classifier[1]).layer.out_scale
    ours, theirs = run(qm, x), ort_run(path, x)
    d = lsb_diff(theirs, ours, out_scale)
    assert (theirs.argmax(1) == ours.argmax(1)).all()
    # Each layer fed the same int8 input: identical but for ties, never more than 1 LSB.
    layers = per_layer_agreement(qm, x[:2], tmp_path)
    assert len(layers) >= 10
    for name, identical, worst in layers:
        assert identical >= 0.999 and worst <= 1, (name, identical, worst)
    # End to end, a tie's 1 LSB moves later layers' rounding too (more so in a random deep network than in a
    # trained one): the logits stay close, within a few LSB.
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cos.min() >= 0.999 and np.abs(d).max() <= 8


def test_qfloat_exports_its_q_graph(tmp_path):
    megq.random.seed(3)
    net = models.resnet8(num_classes=10).eval()
    qat = Q.quantize_qat(net, inplace=False, qconfig=Q.ema_fakequant_qconfig)
    Q.disable_fake_quant(qat)
    qat.train()
    with no_grad():
        for x in data((4, 3, 32, 32), seed=5):
            qat(megq.Tensor(x))
    Q.enable_fake_quant(qat)
    qat.eval()
    x = data((4, 3, 32, 32), seed=6)[0]
    export_onnx(qat, tmp_path / "qfloat.onnx", x)
    export_onnx(Q.quantize(qat, inplace=False).eval(), tmp_path / "q.onnx", x)
    np.testing.assert_array_equal(ort_run(tmp_path / "qfloat.onnx", x), ort_run(tmp_path / "q.onnx", x))
    assert qat.training is False and isinstance(qat.fc, M.qat.Linear)  # the QFloat model itself is untouched


def test_int8_storage_option_gives_the_same_values(tmp_path):
    megq.random.seed(4)
    qm = calibrated_q(models.resnet8(num_classes=10), data((4, 3, 32, 32), seed=7))
    x = data((2, 3, 32, 32), seed=8)[0]
    export_onnx(qm, tmp_path / "u8.onnx", x)
    proto = export_onnx(qm, tmp_path / "s8.onnx", x, int8_as_uint8=False)
    zps = [t for t in proto.graph.initializer if "zero_point" in t.name and "weight" not in t.name
           and "bias" not in t.name]
    assert zps and all(t.data_type == onnx.TensorProto.INT8 for t in zps)
    so = ort.SessionOptions()
    so.add_session_config_entry("session.qdqisint8allowed", "1")
    s8 = ort.InferenceSession(str(tmp_path / "s8.onnx"), so, providers=["CPUExecutionProvider"]).run(None,
                                                                                                      {"input": x})[0]
    np.testing.assert_array_equal(s8, ort_run(tmp_path / "u8.onnx", x))


class _Untraceable(M.Module):
    def __init__(self):
        super().__init__()
        self.conv = M.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x) * 2.0  # a Tensor operator: not a module or megq.functional op


def test_errors_and_no_partial_file(tmp_path):
    x = data((1, 3, 8, 8))[0]
    path = tmp_path / "bad.onnx"
    with pytest.raises(ValueError, match="the model's output received a value that no traced op produced"):
        export_onnx(_Untraceable().eval(), path, x)
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError, match="example_input: expected a numpy array or megq Tensor"):
        export_onnx(models.resnet8(), path, [1, 2, 3])
    with pytest.raises(TypeError, match="example_input: expected a float array"):
        export_onnx(models.resnet8(), path, np.zeros((1, 3, 8, 8), np.int64))
    with pytest.raises(TypeError, match="model: expected a megq Module"):
        export_onnx("resnet", path, x)
    with pytest.raises(ValueError, match="opset"):
        export_onnx(models.resnet8(), path, x, opset=11)
    net = models.resnet8()
    net.train()
    export_onnx(net, path, x)  # traced in eval mode, mode restored
    assert net.training and path.exists()


def test_q_model_with_float_classifier(tmp_path):
    net = randomize_megq(models.resnet8(num_classes=10, quantize_classifier=False), seed=9)
    qm = calibrated_q(net, data((4, 3, 32, 32), seed=10))
    assert type(qm.fc) is M.Linear  # float, after the DequantStub
    x = data((4, 3, 32, 32), seed=11)[0]
    proto = export_onnx(qm, tmp_path / "q.onnx", x)
    assert [n.op_type for n in proto.graph.node][-2:] == ["Gemm", "Identity"]  # the float classifier
    ours, theirs = run(qm, x), ort_run(tmp_path / "q.onnx", x)
    assert (ours.argmax(1) == theirs.argmax(1)).all()
    assert np.abs(ours - theirs).max() <= 0.05 * np.abs(ours).max()
