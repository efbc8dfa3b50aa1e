"""Network latency, batch 1: megq's Q ResNet-18 (224x224, ImageNet stem) and CIFAR-style ResNet-18 (32x32, 3x3
stem, no max pool) against PyTorch int8 and ONNX Runtime int8 on the same weights, in the same run.

Contestants (all take a float32 NCHW input and return float logits):
  * megq: megq.models ResNet -> quantize_qat(ema_fakequant_qconfig_per_channel) -> observers on a few random
    batches -> quantize -> eval; ``qmodel(megq.Tensor(x))``. The first call packs the weights (reported apart).
  * torch int8: the same network in torch (hand-built, torchvision's layout, megq's weights copied), eager-mode
    static quantization (fuse conv+bn(+relu), FloatFunctional add_relu, default qconfig of the engine, calibrated
    on the same random batches) for the engines x86, fbgemm, onednn; eager and traced (torch.jit.trace + freeze).
  * ORT int8: the float torch model exported to ONNX, quant_pre_process, quantize_static (MinMax, per-channel,
    U8 activations / S8 weights), QDQ and QOperator formats.
  * float: ORT float and torch float (traced + frozen).

Timing: contestants are interleaved in rounds (each round runs every contestant ``--calls`` times), so load from
other processes hits all alike; the median of all per-call times is reported (``--rounds`` x ``--calls`` >= 20
samples, after warm-up). Threads: megq.set_num_threads, torch.set_num_threads, ORT intra_op_num_threads
(inter_op 1). Bar: megq <= 0.9x the best int8 peer at 1 and at 2 threads.

Usage: python -m bench.network_latency [--threads 1,2] [--nets resnet18,cifar_resnet18] [--write]
       python -m bench.network_latency --profile  (megq ResNet-18: cProfile, per-layer times, conv vs GEMM)
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
import warnings
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

import megq  # noqa: E402
import megq.kernels  # noqa: E402
import megq.module as M  # noqa: E402
import megq.quantization as Q  # noqa: E402
from megq import models  # noqa: E402
from megq.autodiff import no_grad  # noqa: E402

try:
    from . import _results_md as R
    from .timing import CpuGuard, wait_until_idle
except ImportError:  # pragma: no cover - run as a file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _results_md as R  # type: ignore
    from timing import CpuGuard, wait_until_idle  # type: ignore

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
        self.fc.disable_quantize()


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
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

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


def run_rounds(cs: List[Contestant], rounds: int, calls: int, warmup: int, wait_idle: float = 0.0) -> Dict[str, float]:
    """``wait_idle`` > 0: before each round wait (up to that many seconds) until other processes use < 0.15 cores."""
    for c in cs:
        for _ in range(warmup):
            c.out = np.asarray(c.fn(), dtype=np.float32).reshape(-1)
    guard = CpuGuard().start()
    perf, cpu = time.perf_counter, time.thread_time
    for _ in range(rounds):
        for c in cs:
            if wait_idle > 0:
                wait_until_idle(0.15, wait_idle, 0.3)
            for _ in range(calls):
                u = cpu()
                t = perf()
                c.fn()
                c.samples.append(perf() - t)
                c.cpu_samples.append(cpu() - u)
    return guard.stop()


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


def latency(args) -> int:
    threads = [int(t) for t in args.threads.split(",")]
    t_start = time.perf_counter()
    log(f"machine: {R.machine()}; load average {R.loadavg()}")
    import onnxruntime
    import torch

    versions = (f"megq {getattr(megq, '__version__', '?')} ({megq_build()}), torch {torch.__version__}, "
                f"onnxruntime {onnxruntime.__version__}")
    log(versions)
    prepared: Dict[str, object] = {}
    md: List[str] = []
    verdicts: List[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for net_name in args.nets.split(","):
            cfg = NETS[net_name]
            by_threads: Dict[int, List[Contestant]] = {}
            loads: Dict[int, Dict[str, float]] = {}
            for n in threads:
                log(f"[{net_name}] threads {n}: building contestants ...")
                cs, info = build(net_name, n, tmp, prepared)
                load_before = R.loadavg()
                g = run_rounds(cs, args.rounds, args.calls, args.warmup, args.wait_idle)
                loads[n] = dict(g, loadavg=load_before)
                by_threads[n] = cs
                ref = next(c for c in cs if c.name == "torch float traced+frozen").out
                log(f"[{net_name}] threads {n}: other processes used {g['other_cores']:.2f} cores during the "
                    f"{g['wall']:.0f} s of timing (load average {load_before})")
                for c in cs:
                    log(f"  {c.name:<34} {c.median_ms:9.2f} ms  min {1e3 * min(c.samples):8.2f} ms  calling-thread CPU "
                        f"{c.cpu_ms:8.2f} ms  (cos vs torch float {cosine(c.out, ref):.4f})")
            # table
            names = [c.name for c in by_threads[threads[0]]]
            hdr = "| contestant | " + " | ".join(f"{n} thread{'s' if n > 1 else ''}: median ms (min) | megq / this"
                                                for n in threads)
            hdr += " | 1 thread: CPU ms of the calling thread | megq / this | cos vs float |" if 1 in threads else \
                " | cos vs float |"
            ncol = 2 * len(threads) + (2 if 1 in threads else 0) + 1
            lines = [f"### {cfg['title']}", "", hdr, "|---|" + "---:|" * ncol]
            megq_ms = {n: by_threads[n][0].median_ms for n in threads}
            for i, name in enumerate(names):
                cells = []
                for n in threads:
                    c = by_threads[n][i]
                    cells.append(f"{c.median_ms:.2f} ({1e3 * min(c.samples):.2f}) | {megq_ms[n] / c.median_ms:.2f}")
                if 1 in threads:
                    c = by_threads[1][i]
                    cells.append(f"{c.cpu_ms:.2f} | {by_threads[1][0].cpu_ms / c.cpu_ms:.2f}")
                ref = next(c for c in by_threads[threads[0]] if c.name == "torch float traced+frozen").out
                lines.append(f"| {name} | " + " | ".join(cells) +
                             f" | {cosine(by_threads[threads[0]][i].out, ref):.4f} |")
            lines.append("")
            for n in threads:
                peers = [c for c in by_threads[n] if c.kind == "int8"]
                best = min(peers, key=lambda c: c.median_ms)
                ratio = megq_ms[n] / best.median_ms
                v = (f"{cfg['title']}, {n} thread(s): megq {megq_ms[n]:.2f} ms vs best int8 peer {best.name} "
                     f"{best.median_ms:.2f} ms -> {ratio:.2f}x ({'MET' if ratio <= 0.9 else 'MISSED'}, bar <= 0.90x)")
                if n == 1:
                    bc = min(peers, key=lambda c: c.cpu_ms)
                    v += (f"; by calling-thread CPU time (load-robust): megq {by_threads[1][0].cpu_ms:.2f} ms vs "
                          f"{bc.name} {bc.cpu_ms:.2f} ms -> {by_threads[1][0].cpu_ms / bc.cpu_ms:.2f}x")
                verdicts.append(v)
                lines.append(f"* {v}")
            info = prepared[net_name]["info"]
            lines.append(f"* megq: quantize_qat + calibration + quantize {info['megq_convert_s']:.1f} s; first call "
                         f"(packs the weights) {info['megq_first_call_ms']:.0f} ms (excluded from the medians).")
            lines.append("* load: " + "; ".join(
                f"{n} thread(s): load average {loads[n]['loadavg']}, other processes {loads[n]['other_cores']:.2f} "
                f"cores during timing" for n in threads))
            md.append("\n".join(lines))
    total = time.perf_counter() - t_start
    log("")
    for v in verdicts:
        log(v)
    log(f"total {total:.0f} s")
    if args.write:
        pre = (f"Command: `{R.command_line('bench.network_latency')}` ({total:.0f} s).\n"
               f"Machine: {R.machine()}; {versions}.\n\n"
               f"Median of {args.rounds} rounds x {args.calls} calls per contestant (interleaved rounds, "
               f"{args.warmup} warm-up calls{', waiting up to %g s for an idle machine before each contestant' % args.wait_idle if args.wait_idle else ''}), batch 1, float32 NCHW input to float logits for every contestant. "
               "megq: ema_fakequant_qconfig_per_channel calibrated on 3 random batches of 4; torch: eager static "
               "quantization with the engine's default qconfig (fused conv+bn+relu, add_relu), same weights; ORT: "
               "quantize_static MinMax per-channel U8/S8 after quant_pre_process. `megq / this` < 1 means megq is "
               "faster. cos vs float: cosine similarity of the logits with torch float (sanity).")
        R.update_subsections("Network latency", pre, {m.split("\n", 1)[0][4:]: m.split("\n", 1)[1] for m in md})
        log(f"wrote {R.RESULTS}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
def profile(args) -> int:
    """megq ResNet-18 Q model: per-layer times (forward hooks), cProfile, and conv vs an equivalent GEMM."""
    import cProfile
    import pstats

    from megq.module import quantized as QM

    lines_out: List[str] = []

    def log(*parts) -> None:  # noqa: F811 - also keep the lines for --write
        text = " ".join(str(p) for p in parts)
        lines_out.append(text)
        print(text, flush=True)

    t_start = time.perf_counter()
    threads = [int(t) for t in args.threads.split(",")]
    net_name = args.nets.split(",")[0]
    prepared: Dict[str, object] = {}
    tmp = tempfile.mkdtemp()
    build(net_name, 1, tmp, prepared)  # megq Q model, torch twin, ONNX files (same weights as the latency run)
    qm, x = prepared[net_name]["qm"], prepared[net_name]["xt"]
    log(f"profile of megq's {NETS[net_name]['title']}; load average {R.loadavg()}")
    for n in threads:
        megq.set_num_threads(n)
        for _ in range(3):
            qm(x)
        # per-layer times with hooks on the leaves (QuantizedModule and float leaves)
        times: Dict[str, List[float]] = {}
        starts: Dict[int, float] = {}
        leaves = [(name, m) for name, m in qm.named_modules() if not list(m.children())]
        hs = []
        for name, m in leaves:
            hs.append(m.register_forward_pre_hook(lambda mod, inp, k=id(m): starts.__setitem__(k, time.perf_counter())))
            hs.append(m.register_forward_hook(
                lambda mod, inp, out, k=id(m), nm=name: times.setdefault(nm, []).append(time.perf_counter() - starts[k])))
        totals = []
        for _ in range(args.rounds * args.calls):
            t = time.perf_counter()
            qm(x)
            totals.append(time.perf_counter() - t)
        for h in hs:
            h.remove()
        plain = []
        for _ in range(args.rounds * args.calls):
            t = time.perf_counter()
            qm(x)
            plain.append(time.perf_counter() - t)
        med = {k: min(v) for k, v in times.items()}  # minimum over the calls: robust to load
        mods = dict(leaves)
        by_type: Dict[str, float] = {}
        for k, v in med.items():
            m = mods[k]
            if isinstance(m, QM.Conv2d):
                w = m.layer.weight_q.shape
                key = f"{type(m).__name__} {w[2]}x{w[3]}/s{m.stride[0]}"
            else:
                key = type(m).__name__
            by_type[key] = by_type.get(key, 0.0) + v
        tot_hook, tot_plain = statistics.median(totals), statistics.median(plain)
        leaf_sum = sum(med.values())
        log(f"\n== threads {n}: forward median {1e3 * tot_plain:.2f} ms, min {1e3 * min(plain):.2f} ms (with hooks: "
            f"min {1e3 * min(totals):.2f} ms); sum of the leaves' minimum times {1e3 * leaf_sum:.2f} ms")
        for k, v in sorted(by_type.items(), key=lambda kv: -kv[1]):
            log(f"  {k:<28} {1e3 * v:8.2f} ms  {100 * v / leaf_sum:5.1f} %")
        log("  per layer:")
        for k, v in sorted(med.items(), key=lambda kv: -kv[1])[:args.top]:
            m = mods[k]
            log(f"    {k:<34} {type(m).__name__:<14} {1e3 * v:7.3f} ms")
        # conv2d kernel vs the same-size GEMM (im2col overhead) and Python wrapper overhead
        log("  conv layers: layer time | _C.conv2d alone | GEMM (M=OH*OW, K=Cin*kh*kw, N=Cout) on a prebuilt "
            "patch matrix | GOP/s of the conv")
        K = megq.kernels
        convs = [(k, m) for k, m in leaves if isinstance(m, QM.Conv2d)]
        feats: Dict[str, object] = {}
        hs = [m.register_forward_hook(lambda mod, inp, out, nm=k: feats.__setitem__(nm, (inp[0], out)))
              for k, m in convs]
        qm(x)
        for h in hs:
            h.remove()
        seen_shapes = set()
        sum_layer = sum_c = sum_gemm = 0.0
        for k, m in convs:
            xin, out = feats[k]
            packed, lo, hi = m._packed_for(xin)
            call = lambda: megq._C.conv2d(xin.data, packed, list(m.stride), list(m.padding), list(m.dilation),
                                          m.layer.out_dtype, m.layer.out_zero_point, lo, hi)
            co, ci, kh, kw = m.layer.weight_q.shape
            _, oh, ow, _ = out.data.shape
            Mg, Kg, Ng = oh * ow, ci * kh * kw, co
            rng = np.random.default_rng(0)
            a = rng.integers(-20, 20, (Mg, Kg), dtype=np.int8)
            pg = K.pack_gemm_weights(m.layer.weight_q.transpose(2, 3, 1, 0).reshape(Kg, Ng).copy(),
                                     np.zeros(Ng, np.int32), np.full(Ng, 1e-3, np.float32))
            # interleaved, minimum of 15 (robust to load from other processes)
            tl, tc, tg = _min_times([lambda: m(xin), call, lambda: K.gemm(a, pg)], 15)
            med[k] = tl
            sum_layer += med[k]
            sum_c += tc
            sum_gemm += tg
            shape_key = (ci, co, kh, m.stride[0], oh)
            if shape_key in seen_shapes:
                continue
            seen_shapes.add(shape_key)
            gops = 2 * Mg * Kg * Ng / tc / 1e9
            log(f"    {k:<34} {ci:>3}->{co:<3} {kh}x{kw}/s{m.stride[0]} out {oh}x{ow}: {1e3 * med[k]:6.3f} | "
                f"{1e3 * tc:6.3f} | {1e3 * tg:6.3f} ms (MxKxN {Mg}x{Kg}x{Ng}) | {gops:5.1f}")
        log(f"  all convs: layer {1e3 * sum_layer:.2f} ms, _C.conv2d {1e3 * sum_c:.2f} ms, same-size GEMMs "
            f"{1e3 * sum_gemm:.2f} ms -> Python around the conv kernel {1e3 * (sum_layer - sum_c):.2f} ms, "
            f"conv beyond GEMM (patch gathering/padding) {1e3 * (sum_c - sum_gemm):.2f} ms")
        # ORT QOperator per-node times (its profiler), matched to megq's conv layers by the torch module path
        ort_nodes = ort_node_times(prepared[net_name]["onnx"]["QOperator"], n, x.numpy(), 20)
        conv_ort: Dict[str, float] = {}
        other: Dict[str, float] = {}
        for op, module, dur in ort_nodes:
            if op in ("QLinearConv", "ConvInteger", "Conv") and module:
                conv_ort[module] = conv_ort.get(module, 0.0) + dur
            else:
                other[op] = other.get(op, 0.0) + dur
        log(f"  megq vs ORT QOperator per conv layer ({n} thread(s); ms; both minimum over the runs; ORT from its "
            f"profiler):")
        sm = so_ = 0.0
        for k, m in convs:
            a, b = med[k], conv_ort.get(k, float("nan"))
            sm, so_ = sm + a, so_ + b
            co, ci, kh, kw = m.layer.weight_q.shape
            oh = feats[k][1].data.shape[1]
            log(f"    {k:<26} {ci:>3}->{co:<3} {kh}x{kw}/s{m.stride[0]} out {oh:>3}: megq {1e3 * a:6.3f}  ORT "
                f"{1e3 * b:6.3f}  megq/ORT {a / b:5.2f}")
        log(f"    all convs: megq {1e3 * sm:.2f} ms, ORT {1e3 * so_:.2f} ms -> {sm / so_:.2f}x; ORT other ops (ms): " +
            ", ".join(f"{k} {1e3 * v:.3f}" for k, v in sorted(other.items(), key=lambda kv: -kv[1])))
        # Python overhead: record every megq._C call of one forward, replay the calls alone, compare CPU times
        calls = record_c_calls(qm, x)
        fwd_cpu, replay_cpu = _min_cpu_times([lambda: qm(x), lambda: [f(*a, **kw) for f, a, kw in calls]], 15)
        log(f"  one forward = {len(calls)} megq._C calls; calling-thread CPU time (minimum of 15): forward "
            f"{1e3 * fwd_cpu:.2f} ms, the same _C calls replayed without Python {1e3 * replay_cpu:.2f} ms -> Python "
            f"and numpy outside the kernels {1e3 * (fwd_cpu - replay_cpu):.2f} ms per forward "
            f"({1e6 * (fwd_cpu - replay_cpu) / max(1, len(calls)):.0f} us per kernel call)" if n == 1 else
            f"  one forward = {len(calls)} megq._C calls; wall time (minimum of 15): forward {1e3 * fwd_cpu:.2f} ms, "
            f"replayed _C calls {1e3 * replay_cpu:.2f} ms -> outside the kernels {1e3 * (fwd_cpu - replay_cpu):.2f} ms")
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(20):
            qm(x)
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(18)
        st = pstats.Stats(pr)
        kern = sum(v[2] for f, v in st.stats.items() if f[0] == "~" and "megq._C" in f[2])
        log(f"  cProfile, 20 forwards at {n} thread(s): {1e3 * st.total_tt / 20:.2f} ms per forward, of which megq._C "
            f"calls {1e3 * kern / 20:.2f} ms and everything else (Python, numpy, profiler) "
            f"{1e3 * (st.total_tt - kern) / 20:.2f} ms; sorted by own time:")
        log("\n".join("    " + line for line in s.getvalue().splitlines() if line.strip())[:6000])
    if args.write:
        text = (f"Command: `{R.command_line('bench.network_latency')}` ({time.perf_counter() - t_start:.0f} s; load "
                f"average at the end {R.loadavg()}). Layer times are minima over the calls (robust to load).\n\n"
                "```\n" + "\n".join(lines_out) + "\n```")
        R.update_subsections("Network latency", _current_preamble(),
                             {f"Profile of megq's {NETS[net_name]['title']} (--profile)": text})
        print(f"wrote {R.RESULTS}")
    return 0


def _current_preamble() -> str:
    """The Network latency section's preamble as written by the last latency run (kept by --profile)."""
    import re

    text = open(R.RESULTS).read() if os.path.exists(R.RESULTS) else ""
    m = re.search(r"(?ms)^## Network latency\n(.*?)(?=^### |^## |\Z)", text)
    return m.group(1).strip() if m else "See the subsections."



def ort_node_times(path: str, threads: int, x: np.ndarray, runs: int) -> List[tuple]:
    """(op type, torch module path of the node or "", minimum seconds over the runs) per node, from ORT's
    profiler (the exported node names carry the torch module path, e.g. /layer2/layer2.0/conv_bn2/conv/Conv)."""
    import json

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.log_severity_level = 3
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    for _ in range(runs + 3):
        sess.run(None, {"x": x})
    events = json.load(open(sess.end_profiling()))
    per: Dict[str, List] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        segs = e["name"].lstrip("/").split("/")
        module = ""
        if "conv" in segs[:-1]:
            path_segs = segs[:segs.index("conv")]
            if len(path_segs) > 1 and path_segs[1].startswith(path_segs[0] + "."):
                path_segs = path_segs[1:]
            module = ".".join(path_segs)
        per.setdefault(e["name"], [e.get("args", {}).get("op_name", "?"), module, []])[2].append(e["dur"] * 1e-6)
    return [(op, module, min(d[3:] if len(d) > 3 else d)) for op, module, d in per.values()]


def record_c_calls(model, x) -> List[tuple]:
    """(function, args, kwargs) of every megq._C function called during one forward of ``model``."""
    import megq._C as C

    recorded: List[tuple] = []
    originals = {}
    for name in dir(C):
        f = getattr(C, name)
        if callable(f) and not isinstance(f, type) and not name.startswith("_"):
            originals[name] = f

            def wrapper(*a, _f=f, **kw):
                recorded.append((_f, a, kw))
                return _f(*a, **kw)

            setattr(C, name, wrapper)
    try:
        with no_grad():
            model(x)
    finally:
        for name, f in originals.items():
            setattr(C, name, f)
    return recorded


def _min_cpu_times(fns: Sequence[Callable[[], object]], n: int) -> List[float]:
    """Minimum calling-thread CPU time of each function at 1 thread, wall time otherwise (interleaved)."""
    clock = time.thread_time if megq.get_num_threads() == 1 else time.perf_counter
    for f in fns:
        f()
    best = [float("inf")] * len(fns)
    for _ in range(n):
        for i, f in enumerate(fns):
            t = clock()
            f()
            best[i] = min(best[i], clock() - t)
    return best


def _min_times(fns: Sequence[Callable[[], object]], n: int) -> List[float]:
    for f in fns:
        f()
    best = [float("inf")] * len(fns)
    for _ in range(n):
        for i, f in enumerate(fns):
            t = time.perf_counter()
            f()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--nets", default="resnet18,cifar_resnet18")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                    help="before each contestant's calls in a round, wait up to S s for other processes to go idle")
    ap.add_argument("--write", action="store_true", help="update the Network latency section of RESULTS-quant.md")
    ap.add_argument("--profile", action="store_true", help="profile megq's ResNet-18 Q model instead")
    ap.add_argument("--top", type=int, default=12, help="--profile: slowest layers to list")
    args = ap.parse_args(argv)
    return profile(args) if args.profile else latency(args)


if __name__ == "__main__":
    sys.exit(main())
