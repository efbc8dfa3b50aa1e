"""The networks and contestants the latency and profile suites share: megq's Q ResNet-18 (224x224, ImageNet stem)
and CIFAR-style ResNet-18 (32x32, 3x3 stem, no max pool), and the same weights in PyTorch int8 and ONNX Runtime int8.

Contestants (all take a float32 NCHW input and return float logits):
  * megq: megq.models ResNet -> quantize_qat(ema_fakequant_qconfig_per_channel) -> observers on a few random
    batches -> quantize -> eval; ``qmodel(megq.Tensor(x))``. The first call packs the weights (reported apart).
  * torch int8: the same network in torch (hand-built, torchvision's layout, megq's weights copied), eager-mode
    static quantization (fuse conv+bn(+relu), FloatFunctional add_relu, default qconfig of the engine, calibrated
    on the same random batches) for the engines x86, fbgemm, onednn; eager and traced (torch.jit.trace + freeze).
  * ORT int8: the float torch model exported to ONNX, quant_pre_process, quantize_static (MinMax, per-channel,
    U8 activations / S8 weights), QDQ and QOperator formats.
  * float: ORT float and torch float (traced + frozen).
"""
from __future__ import annotations

import contextlib
import io
import os
import statistics
import time
import warnings
from typing import Callable, Dict, List, Tuple

import numpy as np

import megq
import megq.module as M
import megq.quantization as Q
from megq import models
from megq.autodiff import no_grad

CALIB_BATCHES, CALIB_N = 3, 4
warnings.filterwarnings("ignore")  # torch.ao deprecation notices


def log(*a) -> None:
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# megq models
class CifarResNet18(models.ResNet):
    """ResNet-18 for 32x32 inputs: 3x3 stride-1 stem, no max pool, stages of 64/128/256/512 (BasicBlock x2)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__(models.BasicBlock, [2, 2, 2, 2], num_classes, in_channels)
        self.conv_bn_relu1 = M.ConvBnRelu2d(in_channels, 64, 3, 1, padding=1, bias=False)
        self.maxpool = M.Identity()
        from megq.models._init import init_resnet_weights

        init_resnet_weights(self)


NETS = {
    "resnet18": dict(make=lambda: models.resnet18(), shape=(1, 3, 224, 224), cifar=False, classes=1000,
                     title="ResNet-18, 224x224, batch 1"),
    "cifar_resnet18": dict(make=lambda: CifarResNet18(), shape=(1, 3, 32, 32), cifar=True, classes=10,
                           title="CIFAR-style ResNet-18 (3x3 stem, no max pool), 32x32, batch 1"),
}


def calib_data(shape: Tuple[int, ...], seed: int = 0) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((CALIB_N,) + shape[1:]).astype(np.float32) for _ in range(CALIB_BATCHES)]


def megq_qmodel(net: M.Module, calib: List[np.ndarray]) -> M.Module:
    net.eval()
    qnet = Q.quantize_qat(net, inplace=False, qconfig=Q.ema_fakequant_qconfig_per_channel)
    qnet.eval()  # BN with running statistics; observers switched on explicitly
    Q.enable_observer(qnet)
    Q.disable_fake_quant(qnet)
    with no_grad():
        for x in calib:
            qnet(megq.Tensor(x))
    Q.disable_observer(qnet)
    Q.enable_fake_quant(qnet)
    return Q.quantize(qnet.eval(), inplace=False).eval()


# ---------------------------------------------------------------------------------------------------------------
# torch twin (same state_dict keys as megq's ResNet)
def torch_resnet18(cifar: bool, classes: int):
    import torch.nn as nn
    from torch.ao.nn.quantized import FloatFunctional
    from torch.ao.quantization import DeQuantStub, QuantStub

    class ConvBn(nn.Module):
        def __init__(self, cin, cout, k, stride=1, padding=0, relu=True):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=False)
            self.bn = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU() if relu else None

        def forward(self, x):
            x = self.bn(self.conv(x))
            return self.relu(x) if self.relu is not None else x

    class Block(nn.Module):
        def __init__(self, cin, c, stride):
            super().__init__()
            self.conv_bn_relu1 = ConvBn(cin, c, 3, stride, 1)
            self.conv_bn2 = ConvBn(c, c, 3, 1, 1, relu=False)
            self.downsample = (nn.Identity() if cin == c and stride == 1 else
                               ConvBn(cin, c, 1, stride, 0, relu=False))
            self.add = FloatFunctional()

        def forward(self, x):
            return self.add.add_relu(self.conv_bn2(self.conv_bn_relu1(x)), self.downsample(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = QuantStub(), DeQuantStub()
            self.conv_bn_relu1 = ConvBn(3, 64, 3, 1, 1) if cifar else ConvBn(3, 64, 7, 2, 3)
            self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)
            c = 64
            for i, w in enumerate([64, 128, 256, 512]):
                s = 1 if i == 0 else 2
                setattr(self, f"layer{i + 1}", nn.Sequential(Block(c, w, s), Block(w, w, 1)))
                c = w
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, classes)

        def forward(self, x):
            x = self.maxpool(self.conv_bn_relu1(self.quant(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            x = self.avgpool(x).flatten(1)
            return self.dequant(self.fc(x))

    return Net()


def copy_to_torch(src: M.Module, dst) -> None:
    import torch

    ours = src.state_dict()
    sd = dst.state_dict()
    for k in sd:
        if k.endswith("num_batches_tracked"):
            continue
        sd[k] = torch.from_numpy(np.ascontiguousarray(ours[k]))
    dst.load_state_dict(sd)


def fuse_list(model) -> List[List[str]]:
    out = []
    for name, m in model.named_modules():
        if hasattr(m, "conv") and hasattr(m, "bn"):
            out.append([f"{name}.conv", f"{name}.bn"] + ([f"{name}.relu"] if m.relu is not None else []))
    return out


def torch_int8(float_model, engine: str, calib: List[np.ndarray], example: np.ndarray):
    """Eager-mode static quantization for ``engine``; returns (eager, traced+frozen)."""
    import copy

    import torch
    import torch.ao.quantization as tq

    torch.backends.quantized.engine = engine
    m = copy.deepcopy(float_model).eval()
    m = tq.fuse_modules(m, fuse_list(m))
    m.qconfig = tq.get_default_qconfig(engine)
    tq.prepare(m, inplace=True)
    with torch.no_grad():
        for x in calib:
            m(torch.from_numpy(x))
    tq.convert(m, inplace=True)
    with torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(m, torch.from_numpy(example)))
    return m, traced


# ---------------------------------------------------------------------------------------------------------------
# ONNX Runtime
def export_onnx(float_model, example: np.ndarray, path: str) -> None:
    import torch

    kw = dict(input_names=["x"], output_names=["y"], opset_version=17)
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        try:
            torch.onnx.export(float_model, (torch.from_numpy(example),), path, dynamo=False, **kw)
        except TypeError:  # older torch: no dynamo argument
            torch.onnx.export(float_model, (torch.from_numpy(example),), path, **kw)


def ort_int8(float_path: str, fmt: str, calib: List[np.ndarray], out_dir: str) -> str:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    pre = os.path.join(out_dir, "pre.onnx")
    if not os.path.exists(pre):
        quant_pre_process(float_path, pre, skip_symbolic_shape=True)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": x[i:i + 1]} for x in calib for i in range(len(x))])

        def get_next(self):
            return next(self.it, None)

    out = os.path.join(out_dir, f"int8_{fmt}.onnx")
    quantize_static(pre, out, Reader(), quant_format=getattr(QuantFormat, fmt), per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return out


def ort_session(path: str, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------------------------------------------
class Contestant:
    def __init__(self, name: str, kind: str, fn: Callable[[], np.ndarray]) -> None:
        self.name, self.kind, self.fn = name, kind, fn
        self.samples: List[float] = []
        self.cpu_samples: List[float] = []  # CPU time of the calling thread per call
        self.out: np.ndarray = np.zeros(0)

    @property
    def median_ms(self) -> float:
        return 1e3 * statistics.median(self.samples)

    @property
    def cpu_ms(self) -> float:
        return 1e3 * statistics.median(self.cpu_samples)


def build(net_name: str, threads: int, tmp: str, prepared: Dict[str, object]) -> Tuple[List[Contestant], Dict]:
    """Contestants of one network at one thread count (models are built once and cached in ``prepared``)."""
    import torch

    cfg = NETS[net_name]
    x = np.random.default_rng(42).standard_normal(cfg["shape"]).astype(np.float32)
    if net_name not in prepared:
        megq.random.seed(0)
        net = cfg["make"]()
        calib = calib_data(cfg["shape"])
        info: Dict[str, object] = {}
        t = time.perf_counter()
        qm = megq_qmodel(net, calib)
        info["megq_convert_s"] = time.perf_counter() - t
        xt = megq.Tensor(x)
        t = time.perf_counter()
        with no_grad():
            qm(xt)
        info["megq_first_call_ms"] = 1e3 * (time.perf_counter() - t)
        tf = torch_resnet18(cfg["cifar"], cfg["classes"]).eval()
        copy_to_torch(net, tf)
        with torch.no_grad():
            tf_traced = torch.jit.freeze(torch.jit.trace(tf, torch.from_numpy(x)))
        tq = {}
        for eng in ("x86", "fbgemm", "onednn"):
            try:
                tq[eng] = torch_int8(tf, eng, calib, x)
            except Exception as e:  # an engine may be unusable on this CPU
                log(f"  torch {eng}: skipped ({type(e).__name__}: {e})")
        d = os.path.join(tmp, net_name)
        os.makedirs(d, exist_ok=True)
        fpath = os.path.join(d, "float.onnx")
        export_onnx(tf, x, fpath)
        onnx_paths = {"float": fpath}
        for fmt in ("QDQ", "QOperator"):
            onnx_paths[fmt] = ort_int8(fpath, fmt, calib, d)
        prepared[net_name] = dict(qm=qm, xt=xt, tf=tf, tf_traced=tf_traced, tq=tq, onnx=onnx_paths, info=info)
    p = prepared[net_name]
    megq.set_num_threads(threads)
    torch.set_num_threads(threads)
    xt_torch = torch.from_numpy(x)

    def megq_fn():
        return p["qm"](p["xt"]).numpy()

    def torch_fn(model, engine=None):
        def f():
            if engine is not None:
                torch.backends.quantized.engine = engine
            with torch.inference_mode():
                return model(xt_torch).numpy()
        return f

    cs = [Contestant("megq int8 (Q model)", "megq", megq_fn)]
    for eng, (eager, traced) in p["tq"].items():
        cs.append(Contestant(f"torch int8 {eng} eager", "int8", torch_fn(eager, eng)))
        cs.append(Contestant(f"torch int8 {eng} traced+frozen", "int8", torch_fn(traced, eng)))
    for fmt in ("QDQ", "QOperator"):
        sess = ort_session(p["onnx"][fmt], threads)
        cs.append(Contestant(f"ORT int8 {fmt} per-channel", "int8",
                             lambda s=sess: s.run(None, {"x": x})[0]))
    sess = ort_session(p["onnx"]["float"], threads)
    cs.append(Contestant("ORT float", "float", lambda s=sess: s.run(None, {"x": x})[0]))
    cs.append(Contestant("torch float traced+frozen", "float", torch_fn(p["tf_traced"])))
    cs.append(Contestant("torch float eager", "float", torch_fn(p["tf"])))
    return cs, p["info"]


def megq_build() -> str:
    """When the loaded megq._C was installed, and the checkout's HEAD (the build may differ from it)."""
    import datetime
    import subprocess

    import megq._C as C

    when = datetime.datetime.fromtimestamp(os.path.getmtime(C.__file__), datetime.timezone.utc)
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = ""
    return f"_C installed {when:%Y-%m-%d %H:%M} UTC" + (f", checkout HEAD {head}" if head else "")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
