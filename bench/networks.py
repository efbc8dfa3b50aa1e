"""The networks and contestants the latency and profile suites share: megq's Q ResNet-18 (224x224, ImageNet stem),
CIFAR-style ResNet-18 (32x32, 3x3 stem, no max pool) and MobileNetV2 (torchvision's architecture, 224x224), and the
same weights in PyTorch int8, ONNX Runtime int8 and OpenVINO int8.

Contestants (all take a float32 NCHW batch and return float logits):
  * megq: megq.models network -> quantize_qat(ema_fakequant_qconfig_per_channel) -> observers on a few random
    batches -> quantize -> eval; ``qmodel(megq.Tensor(x))``. The first call packs the weights (reported apart).
  * torch int8: the same network in torch (hand-built, torchvision's layout, megq's weights copied), eager-mode
    static quantization (fuse conv+bn(+relu), FloatFunctional add / add_relu, default qconfig of the engine,
    calibrated on the same random batches) for the engines x86, fbgemm, onednn; eager and traced (torch.jit.trace +
    freeze). torch cannot fuse ReLU6 into a quantized conv (its fuser knows conv+bn+ReLU only), so MobileNetV2 runs
    in two forms: the exact network (conv+bn fused, ReLU6 a separate quantized op) and torchvision's quantizable
    form (``torchvision.models.quantization.mobilenet_v2`` replaces every ReLU6 by a ReLU fused into its conv: a
    different network, its logits differ; listed because it is how torch users get an int8 MobileNetV2, but not
    counted as a peer for the bars).
  * ORT int8: the float torch model exported to ONNX, quant_pre_process, quantize_static (MinMax, per-channel,
    U8 activations / S8 weights), QDQ and QOperator formats; the batch dimension fixed per run.
  * OpenVINO int8: OpenVINO's CPU plugin compiling ORT's QDQ model (its low-precision transformations turn the QDQ
    pairs into int8 convolutions; :func:`openvino_int8_report` checks that they did).
  * float: ORT float, torch float (traced + frozen, eager) and OpenVINO float (f32 inference precision).

Threads and idle pools: megq.set_num_threads, torch.set_num_threads, ORT intra_op_num_threads (inter_op 1),
OpenVINO INFERENCE_NUM_THREADS. The contestants run interleaved in one process, so an idle pool must not keep a core
busy while the next contestant runs: ORT's spinning is switched off (session.intra_op / inter_op.allow_spinning 0),
torch's OpenMP workers wait passively (OMP_WAIT_POLICY=PASSIVE, set by :func:`quiet_thread_pools` before torch is
imported); OpenVINO's TBB workers have no such switch (TBB parks idle workers after a short spin by itself); megq's
own workers poll up to 200 us after a job (not at all when the OS put them on the caller's core), then sleep.
"""
from __future__ import annotations

import contextlib
import io
import os
import statistics
import time
import warnings
from typing import Callable, Dict, List, Optional, Tuple

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


def quiet_thread_pools() -> None:
    """Make torch's OpenMP workers sleep when idle (read by libgomp when torch is imported: call this first).
    An explicit OMP_WAIT_POLICY in the environment wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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


def lively(net: M.Module, seed: int = 0) -> M.Module:
    """Random weights and BN statistics that keep activations near unit size through the depth (He-scaled by
    fan-in). MobileNetV2's default initialisation (torchvision's: fan-out scaling, identity BN) shrinks the
    activations of every depthwise layer when BN is frozen at its initial statistics: the logits come out near 1e-8
    and quantize to all zeros, which makes the logits check meaningless."""
    rng = np.random.default_rng(seed)
    sd = {}
    for k, t in net.state_dict().items():
        if k.endswith("running_var") or (t.ndim == 1 and k.endswith("weight")):  # BN variance and gamma
            v = rng.uniform(0.75, 1.25, t.shape)
        elif k.endswith("running_mean") or k.endswith("bias"):
            v = rng.normal(0.0, 0.1, t.shape)
        else:  # conv / linear weights
            v = rng.normal(0.0, (2.0 / t[0].size) ** 0.5, t.shape)
        sd[k] = v.astype(t.dtype)
    net.load_state_dict(sd)
    return net


NETS = {
    "resnet18": dict(make=lambda: models.resnet18(), torch=lambda variant: torch_resnet18(False, 1000),
                     chw=(3, 224, 224), classes=1000, title="ResNet-18, 224x224"),
    "cifar_resnet18": dict(make=lambda: CifarResNet18(), torch=lambda variant: torch_resnet18(True, 10),
                           chw=(3, 32, 32), classes=10,
                           title="CIFAR-style ResNet-18 (3x3 stem, no max pool), 32x32"),
    "mobilenet_v2": dict(make=lambda: lively(models.mobilenet_v2()),
                         torch=lambda variant: torch_mobilenet_v2(1000, variant), chw=(3, 224, 224), classes=1000,
                         title="MobileNetV2 (torchvision architecture), 224x224",
                         torch_variants=("relu6", "relu")),
}


def parse_net_args(args) -> Tuple[List[int], List[int], List[str]]:
    """``--threads``, ``--batch`` and ``--nets`` (comma lists) of the whole-network suites, checked."""
    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batch.split(",")]
    nets = args.nets.split(",")
    bad = [n for n in nets if n not in NETS]
    if bad:
        raise SystemExit(f"--nets: unknown network(s) {bad}; choose from {sorted(NETS)}")
    return threads, batches, nets


def title(net_name: str, batch: int) -> str:
    return f"{NETS[net_name]['title']}, batch {batch}"


def calib_data(chw: Tuple[int, ...], seed: int = 0) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((CALIB_N,) + tuple(chw)).astype(np.float32) for _ in range(CALIB_BATCHES)]


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
# torch twins (same state_dict keys as megq's networks)
def _conv_bn():
    import torch.nn as nn

    class ConvBn(nn.Module):
        """conv + bn + optional activation ("relu", "relu6" or None), the keys of megq's fused ConvBn modules."""

        def __init__(self, cin, cout, k, stride=1, padding=0, act="relu", groups=1):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=False)
            self.bn = nn.BatchNorm2d(cout)
            self.relu = {"relu": nn.ReLU, "relu6": nn.ReLU6}[act]() if act else None

        def forward(self, x):
            x = self.bn(self.conv(x))
            return self.relu(x) if self.relu is not None else x

    return ConvBn


def torch_resnet18(cifar: bool, classes: int):
    import torch.nn as nn
    from torch.ao.nn.quantized import FloatFunctional
    from torch.ao.quantization import DeQuantStub, QuantStub

    ConvBn = _conv_bn()

    class Block(nn.Module):
        def __init__(self, cin, c, stride):
            super().__init__()
            self.conv_bn_relu1 = ConvBn(cin, c, 3, stride, 1)
            self.conv_bn2 = ConvBn(c, c, 3, 1, 1, act=None)
            self.downsample = (nn.Identity() if cin == c and stride == 1 else
                               ConvBn(cin, c, 1, stride, 0, act=None))
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


def torch_mobilenet_v2(classes: int, variant: str = "relu6"):
    """torchvision's MobileNetV2 (models/mobilenetv2.py: ReLU6 after expansions and depthwise convs, linear
    projections, residual adds, Dropout + Linear) with megq's module names. ``variant="relu"``: every ReLU6 replaced
    by a ReLU, as torchvision's quantizable MobileNetV2 does so that torch can fuse it into the conv."""
    import torch.nn as nn
    from torch.ao.nn.quantized import FloatFunctional
    from torch.ao.quantization import DeQuantStub, QuantStub

    ConvBn = _conv_bn()
    act = {"relu6": "relu6", "relu": "relu"}[variant]

    def divisible(v, d=8):
        n = max(d, int(v + d / 2) // d * d)
        return n + d if n < 0.9 * v else n

    class InvertedResidual(nn.Module):
        def __init__(self, inp, oup, stride, t):
            super().__init__()
            hidden = int(round(inp * t))
            self.use_res = stride == 1 and inp == oup
            layers = [ConvBn(inp, hidden, 1, act=act)] if t != 1 else []
            layers += [ConvBn(hidden, hidden, 3, stride, 1, act=act, groups=hidden),
                       ConvBn(hidden, oup, 1, act=None)]
            self.conv = nn.Sequential(*layers)
            self.add = FloatFunctional() if self.use_res else None

        def forward(self, x):
            return self.add.add(x, self.conv(x)) if self.use_res else self.conv(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = QuantStub(), DeQuantStub()
            setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)]
            c_in = divisible(32)
            features = [ConvBn(3, c_in, 3, 2, 1, act=act)]
            for t, c, n, s in setting:
                for i in range(n):
                    features.append(InvertedResidual(c_in, divisible(c), s if i == 0 else 1, t))
                    c_in = divisible(c)
            features.append(ConvBn(c_in, 1280, 1, act=act))
            self.features = nn.Sequential(*features)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

        def forward(self, x):
            x = self.avgpool(self.features(self.quant(x))).flatten(1)
            return self.dequant(self.classifier(x))

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
    """conv+bn, plus the activation when torch can fuse it (ReLU; ReLU6 stays a separate quantized op)."""
    import torch.nn as nn

    out = []
    for name, m in model.named_modules():
        if hasattr(m, "conv") and hasattr(m, "bn"):
            out.append([f"{name}.conv", f"{name}.bn"] + ([f"{name}.relu"] if isinstance(m.relu, nn.ReLU) else []))
    return out


def torch_int8(float_model, engine: str, calib: List[np.ndarray]):
    """Eager-mode static quantization for ``engine`` (the eager model works for every batch size)."""
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
    return m


def torch_traced(model, example: np.ndarray, engine: Optional[str] = None):
    import torch

    if engine is not None:
        torch.backends.quantized.engine = engine
    with torch.no_grad():
        return torch.jit.freeze(torch.jit.trace(model, torch.from_numpy(example)))


# ---------------------------------------------------------------------------------------------------------------
# ONNX Runtime
def export_onnx(float_model, example: np.ndarray, path: str) -> None:
    """Export with a symbolic batch dimension (fixed per batch size by :func:`static_batch`)."""
    import torch

    kw = dict(input_names=["x"], output_names=["y"], opset_version=17, dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        try:
            torch.onnx.export(float_model, (torch.from_numpy(example),), path, dynamo=False, **kw)
        except TypeError:  # older torch: no dynamo argument
            torch.onnx.export(float_model, (torch.from_numpy(example),), path, **kw)


def static_batch(path: str, batch: int) -> str:
    """A copy of the ONNX model at ``path`` with the batch dimension of its input and output fixed to ``batch``
    (intermediate shape annotations dropped: the runtimes infer them), so every runtime sees static shapes."""
    import onnx

    out = path.replace(".onnx", f"_b{batch}.onnx")
    if not os.path.exists(out):
        m = onnx.load(path)
        del m.graph.value_info[:]
        for v in list(m.graph.input) + list(m.graph.output):
            d = v.type.tensor_type.shape.dim[0]
            d.ClearField("dim_param")
            d.dim_value = batch
        onnx.save(m, out)
    return out


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
    # idle workers block instead of spinning: they would steal a core from the next interleaved contestant
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------------------------------------------
# OpenVINO
def openvino_version() -> Optional[str]:
    try:
        import openvino as ov
    except ImportError:
        return None
    return ov.get_version()


def openvino_compile(path: str, threads: int, hint: str, precision: Optional[str] = None, streams: int = 1):
    """Compile the ONNX model at ``path`` for the CPU with ``threads`` inference threads and the performance
    ``hint`` (LATENCY: one stream using every thread; THROUGHPUT: ``streams`` streams sharing the threads)."""
    import openvino as ov

    cfg = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": hint}
    if hint == "THROUGHPUT":
        cfg["NUM_STREAMS"] = streams
    if precision is not None:
        cfg["INFERENCE_PRECISION_HINT"] = precision
    core = ov.Core()
    return core.compile_model(core.read_model(path), "CPU", cfg)


def openvino_int8_report(compiled) -> str:
    """What OpenVINO really runs: the convolutions of its runtime (executable) graph by runtime precision and
    primitive (an int8 model must show i8/u8 convolutions, not f32 ones on dequantized weights)."""
    counts: Dict[Tuple[str, str], int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        layer, precision, primitive = (str(rt[k].astype(str)) if k in rt else "?"
                                       for k in ("layerType", "runtimePrecision", "primitiveType"))
        if "Convolution" not in layer:
            continue
        key = (precision, primitive)
        counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values())
    int8 = sum(v for (p, _), v in counts.items() if p.upper() in ("I8", "U8"))
    props = []
    for k in ("ENABLE_CPU_PINNING", "INFERENCE_PRECISION_HINT"):  # OpenVINO's defaults, left as they are
        with contextlib.suppress(Exception):
            v = compiled.get_property(k)
            props.append(f"{k} {v.get_type_name() if hasattr(v, 'get_type_name') else v}")
    return (f"{int8} of {total} convolution layers run int8 (" +
            ", ".join(f"{v} x {p} {prim}" for (p, prim), v in sorted(counts.items(), key=lambda kv: -kv[1])) + ")" +
            (f"; compiled with {', '.join(props)}" if props else ""))


# ---------------------------------------------------------------------------------------------------------------
class Contestant:
    def __init__(self, name: str, kind: str, fn: Callable[[], np.ndarray], batch: int = 1) -> None:
        self.name, self.kind, self.fn, self.batch = name, kind, fn, batch
        self.samples: List[float] = []
        self.cpu_samples: List[float] = []  # CPU time of the calling thread per call
        self.out: np.ndarray = np.zeros(0)

    @property
    def median_ms(self) -> float:
        return 1e3 * statistics.median(self.samples)

    @property
    def min_ms(self) -> float:
        return 1e3 * min(self.samples)

    @property
    def cpu_ms(self) -> float:
        return 1e3 * statistics.median(self.cpu_samples)

    @property
    def images_per_s(self) -> float:
        """Per-image throughput from the median call time."""
        return 1e3 * self.batch / self.median_ms


def _prepare_net(net_name: str, tmp: str, torch_int8_models: bool = True) -> Dict[str, object]:
    """The models of one network that do not depend on the batch size or the thread count."""
    import torch

    cfg = NETS[net_name]
    megq.random.seed(0)
    net = cfg["make"]()
    calib = calib_data(cfg["chw"])
    x1 = np.random.default_rng(42).standard_normal((1,) + cfg["chw"]).astype(np.float32)
    info: Dict[str, object] = {}
    t = time.perf_counter()
    qm = megq_qmodel(net, calib)
    info["megq_convert_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with no_grad():
        qm(megq.Tensor(x1))
    info["megq_first_call_ms"] = 1e3 * (time.perf_counter() - t)
    variants = cfg.get("torch_variants", (None,))
    tf: Dict[object, object] = {}
    for v in variants:
        tf[v] = cfg["torch"](v).eval()
        copy_to_torch(net, tf[v])
    tq: Dict[Tuple[str, object], object] = {}
    for v in variants if torch_int8_models else ():
        for eng in ("x86", "fbgemm", "onednn"):
            try:
                tq[(eng, v)] = torch_int8(tf[v], eng, calib)
            except Exception as e:  # an engine may be unusable on this CPU
                log(f"  torch {eng}{'' if v is None else ' ' + v}: skipped ({type(e).__name__}: {e})")
    d = os.path.join(tmp, net_name)
    os.makedirs(d, exist_ok=True)
    fpath = os.path.join(d, "float.onnx")
    with torch.no_grad():
        export_onnx(tf[variants[0]], x1, fpath)
    onnx_paths = {"float": fpath}
    for fmt in ("QDQ", "QOperator"):
        onnx_paths[fmt] = ort_int8(fpath, fmt, calib, d)
    return dict(qm=qm, tf=tf, tq=tq, onnx=onnx_paths, info=info, variants=variants, traced={}, inputs={})


def net_input(net_name: str, batch: int) -> np.ndarray:
    """The timed input: image 0 is the same for every batch size (so batch 1 and 8 outputs can be compared)."""
    return np.random.default_rng(42).standard_normal((batch,) + NETS[net_name]["chw"]).astype(np.float32)


def build(net_name: str, threads: int, tmp: str, prepared: Dict[str, object], batch: int = 1,
          openvino: bool = True, torch_int8_models: bool = True) -> Tuple[List[Contestant], Dict]:
    """Contestants of one network at one thread count and batch size (models are built once and cached in
    ``prepared``). ``openvino=False`` / ``torch_int8_models=False`` leave those contestants out."""
    import torch

    if net_name not in prepared:
        prepared[net_name] = _prepare_net(net_name, tmp, torch_int8_models)
    p = prepared[net_name]
    x = p["inputs"].setdefault(batch, net_input(net_name, batch))
    xt = megq.Tensor(x)
    if "xt" not in p:
        p["xt"] = megq.Tensor(net_input(net_name, 1))  # the batch-1 input (bench/profile.py)
    variants = p["variants"]
    traced = p["traced"]
    if ("float", variants[0], batch) not in traced:
        traced[("float", variants[0], batch)] = torch_traced(p["tf"][variants[0]], x)
    for (eng, v), m in p["tq"].items():
        if (eng, v, batch) not in traced:
            traced[(eng, v, batch)] = torch_traced(m, x, eng)
    megq.set_num_threads(threads)
    torch.set_num_threads(threads)
    xt_torch = torch.from_numpy(x)

    def megq_fn():
        return p["qm"](xt).numpy()

    def torch_fn(model, engine=None):
        def f():
            if engine is not None:
                torch.backends.quantized.engine = engine
            with torch.inference_mode():
                return model(xt_torch).numpy()
        return f

    def vname(v):
        return "" if v is None or v == variants[0] else {"relu": " (ReLU6 -> ReLU, fused)"}.get(v, f" ({v})")

    cs = [Contestant("megq int8 (Q model)", "megq", megq_fn, batch)]
    for (eng, v), eager in p["tq"].items():
        # a variant that changes the network (ReLU6 -> ReLU) is listed for reference, never the best peer
        kind = "int8" if v == variants[0] else "int8 other net"
        cs.append(Contestant(f"torch int8 {eng} eager{vname(v)}", kind, torch_fn(eager, eng), batch))
        cs.append(Contestant(f"torch int8 {eng} traced+frozen{vname(v)}", kind,
                             torch_fn(traced[(eng, v, batch)], eng), batch))
    static = {k: static_batch(path, batch) for k, path in p["onnx"].items()}
    for fmt in ("QDQ", "QOperator"):
        sess = ort_session(static[fmt], threads)
        cs.append(Contestant(f"ORT int8 {fmt} per-channel", "int8", lambda s=sess: s.run(None, {"x": x})[0], batch))
    ov_float = None
    if openvino and openvino_version() is not None:
        ov_int8 = openvino_compile(static["QDQ"], threads, "LATENCY")
        if "openvino_int8" not in p["info"]:
            p["info"]["openvino_int8"] = openvino_int8_report(ov_int8)
        cs.append(Contestant("OpenVINO int8 (QDQ model, LATENCY)", "int8", _ov_sync(ov_int8, x), batch))
        if batch > 1:
            # THROUGHPUT: one stream per thread, the batch split into single images served by parallel requests
            ov_tp = openvino_compile(static_batch(p["onnx"]["QDQ"], 1), threads, "THROUGHPUT", streams=threads)
            cs.append(Contestant("OpenVINO int8 (QDQ model, THROUGHPUT, a stream per thread, 1 image/request)", "int8",
                                 _ov_async(ov_tp, x, threads), batch))
        ov_float = openvino_compile(static["float"], threads, "LATENCY", precision="f32")
    sess = ort_session(static["float"], threads)
    cs.append(Contestant("ORT float", "float", lambda s=sess: s.run(None, {"x": x})[0], batch))
    cs.append(Contestant("torch float traced+frozen", "float", torch_fn(traced[("float", variants[0], batch)]),
                         batch))
    cs.append(Contestant("torch float eager", "float", torch_fn(p["tf"][variants[0]]), batch))
    if ov_float is not None:
        cs.append(Contestant("OpenVINO float (f32)", "float", _ov_sync(ov_float, x), batch))
    return cs, p["info"]


def _ov_sync(compiled, x: np.ndarray) -> Callable[[], np.ndarray]:
    req = compiled.create_infer_request()

    def f():
        req.infer({0: x})
        return req.get_output_tensor(0).data
    return f


def _ov_async(compiled, x: np.ndarray, jobs: int) -> Callable[[], np.ndarray]:
    """Run the images of ``x`` one per request on an AsyncInferQueue of ``jobs`` requests; returns the logits."""
    import openvino as ov

    queue = ov.AsyncInferQueue(compiled, jobs)
    out = [None] * len(x)

    def done(request, i):
        out[i] = request.get_output_tensor(0).data.copy()

    queue.set_callback(done)
    images = [np.ascontiguousarray(x[i:i + 1]) for i in range(len(x))]

    def f():
        for i, xi in enumerate(images):
            queue.start_async({0: xi}, i)
        queue.wait_all()
        return np.concatenate(out)
    return f


# ---------------------------------------------------------------------------------------------------------------
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
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    where = ("" if os.path.abspath(megq.__file__).startswith(repo + os.sep) else
             "; megq imported from an installed copy, not from this checkout")
    return f"_C installed {when:%Y-%m-%d %H:%M} UTC" + (f", checkout HEAD {head}" if head else "") + where


def megq_isa() -> str:
    """megq's active kernel path and the best one this CPU supports."""
    from megq.kernels import cpu_info

    info = cpu_info()
    return f"megq ISA path {info['active']} (best usable {info['best']}; built {','.join(info['built'])})"


def cpu_description() -> str:
    """CPU model name, vendor family/model/stepping (/proc/cpuinfo) and logical CPU count."""
    fields: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                k, _, v = line.partition(":")
                fields[k.strip()] = v.strip()
    except OSError:
        pass
    name = fields.get("model name", "")
    try:
        import subprocess

        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), name)
    except (OSError, subprocess.SubprocessError):
        pass
    import platform

    name = name or platform.processor() or platform.machine()
    fam = ", ".join(f"{k} {fields[k2]}" for k, k2 in (("family", "cpu family"), ("model", "model"),
                                                      ("stepping", "stepping")) if k2 in fields)
    return f"{name}" + (f" ({fam})" if fam else "") + f", {os.cpu_count()} logical CPUs"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
