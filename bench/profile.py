"""Profile of one of megq's Q networks (batch 1; ResNet-18, CIFAR-style ResNet-18 or MobileNetV2): per-layer times
(forward hooks), each conv layer against its kernel call alone and (dense convs) against a same-size GEMM, megq vs
ONNX Runtime per conv layer (ORT's profiler; ORT's nodes are matched to megq's layers by the torch module path the
exporter writes into the node names), the time spent outside the kernels, and cProfile.

Usage: python -m bench profile [--threads 1,2] [--nets resnet18|cifar_resnet18|mobilenet_v2] [--write]
"""
from __future__ import annotations

import argparse
import functools
import io
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Sequence

import numpy as np

import megq
import megq.kernels

from . import _results_md as R
from .networks import NETS, build, static_batch, title


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
    if net_name not in NETS:
        raise SystemExit(f"--nets: unknown network {net_name!r}; choose from {sorted(NETS)}")
    prepared: Dict[str, object] = {}
    tmp = tempfile.mkdtemp()
    # megq Q model, torch twin, ONNX files (same weights as the latency run)
    build(net_name, 1, tmp, prepared, openvino=False, torch_int8_models=False)
    qm, x = prepared[net_name]["qm"], prepared[net_name]["xt"]
    log(f"profile of megq's {title(net_name, 1)}; load average {R.loadavg()}")
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
            hs.append(m.register_forward_pre_hook(functools.partial(_start_hook, starts=starts)))
            hs.append(m.register_forward_hook(functools.partial(_end_hook, name=name, starts=starts, times=times)))
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
                key = f"{type(m).__name__} {'dw ' if m.depthwise else ''}{w[2]}x{w[3]}/s{m.stride[0]}"
            else:
                key = type(m).__name__
            by_type[key] = by_type.get(key, 0.0) + v
        _tot_hook, tot_plain = statistics.median(totals), statistics.median(plain)
        if not med:
            log(f"\n== threads {n}: forward median {1e3 * tot_plain:.2f} ms, min {1e3 * min(plain):.2f} ms; no "
                "per-layer times: the model's leaf modules were not called one by one")
            continue
        leaf_sum = sum(med.values())
        log(f"\n== threads {n}: forward median {1e3 * tot_plain:.2f} ms, min {1e3 * min(plain):.2f} ms (with hooks: "
            f"min {1e3 * min(totals):.2f} ms); sum of the leaves' minimum times {1e3 * leaf_sum:.2f} ms")
        for k, v in sorted(by_type.items(), key=lambda kv: -kv[1]):
            log(f"  {k:<28} {1e3 * v:8.2f} ms  {100 * v / leaf_sum:5.1f} %")
        log("  per layer:")
        for k, v in sorted(med.items(), key=lambda kv: -kv[1])[:args.top]:
            m = mods[k]
            log(f"    {k:<34} {type(m).__name__:<14} {1e3 * v:7.3f} ms")
        # conv layer vs its prepared kernel alone (the layer's kernel_for) vs the same-size GEMM (im2col overhead)
        log("  conv layers: layer time | its prepared kernel alone | GEMM (M=OH*OW, K=Cin*kh*kw, N=Cout) on a "
            "prebuilt patch matrix (dense convs only) | GOP/s of the conv")
        K = megq.kernels
        convs = [(k, m) for k, m in leaves if isinstance(m, QM.Conv2d)]
        feats: Dict[str, object] = {}
        hs = [m.register_forward_hook(functools.partial(_keep_io, name=k, feats=feats)) for k, m in convs]
        qm(x)
        for h in hs:
            h.remove()
        seen_shapes = set()
        sum_layer = sum_c = sum_c_dense = sum_gemm = 0.0
        for k, m in convs:
            xin, out = feats[k]
            kernel, data = m.kernel_for(xin), xin.data
            co, ci, kh, kw = m.layer.weight_q.shape
            _, oh, ow, _ = out.data.shape
            Mg, Kg, Ng = oh * ow, ci * kh * kw, co
            fns = [functools.partial(m, xin), functools.partial(kernel, data)]
            if not m.depthwise:  # a depthwise layer has no same-size GEMM (each channel is its own K = kh*kw sum)
                rng = np.random.default_rng(0)
                a = rng.integers(-20, 20, (Mg, Kg), dtype=np.int8)
                pg = K.pack_gemm_weights(m.layer.weight_q.transpose(2, 3, 1, 0).reshape(Kg, Ng).copy(),
                                         np.zeros(Ng, np.int32), np.full(Ng, 1e-3, np.float32))
                fns.append(functools.partial(K.prepare_gemm(pg), a))
            # interleaved, minimum of 15 (robust to load from other processes)
            tl, tc, *tg = _min_times(fns, 15)
            tg = tg[0] if tg else float("nan")
            med[k] = tl
            sum_layer += tl
            sum_c += tc
            if not m.depthwise:
                sum_c_dense += tc
                sum_gemm += tg
            shape_key = (ci, co, kh, m.stride[0], oh)
            if shape_key in seen_shapes:
                continue
            seen_shapes.add(shape_key)
            gops = 2 * Mg * Kg * Ng / tc / 1e9
            kind = "dw " if m.depthwise else ""
            log(f"    {k:<34} {ci * m.groups:>4}->{co:<4} {kind}{kh}x{kw}/s{m.stride[0]} out {oh}x{ow}: "
                f"{1e3 * tl:6.3f} | {1e3 * tc:6.3f} | {1e3 * tg:6.3f} ms (MxKxN {Mg}x{Kg}x{Ng}) | {gops:5.1f}")
        log(f"  all convs: layer {1e3 * sum_layer:.2f} ms, kernels alone {1e3 * sum_c:.2f} ms (dense "
            f"{1e3 * sum_c_dense:.2f} ms), same-size GEMMs of the dense convs {1e3 * sum_gemm:.2f} ms -> Python around "
            f"the conv kernels {1e3 * (sum_layer - sum_c):.2f} ms, dense conv beyond GEMM (patch gathering/padding) "
            f"{1e3 * (sum_c_dense - sum_gemm):.2f} ms")
        # ORT QOperator per-node times (its profiler), matched to megq's conv layers by the torch module path
        ort_nodes = ort_node_times(static_batch(prepared[net_name]["onnx"]["QOperator"], 1), n, x.numpy(), 20)
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
            kind = "dw " if m.depthwise else ""
            log(f"    {k:<26} {ci * m.groups:>4}->{co:<4} {kind}{kh}x{kw}/s{m.stride[0]} out {oh:>3}: megq "
                f"{1e3 * a:6.3f}  ORT {1e3 * b:6.3f}  megq/ORT {a / b:5.2f}")
        log(f"    all convs: megq {1e3 * sm:.2f} ms, ORT {1e3 * so_:.2f} ms -> {sm / so_:.2f}x; ORT other ops (ms): " +
            ", ".join(f"{k} {1e3 * v:.3f}" for k, v in sorted(other.items(), key=lambda kv: -kv[1])))
        # time outside the kernels: the whole forward against its conv kernels alone (measured above)
        fwd = _min_times([functools.partial(qm, x)], 15)[0]
        log(f"  one forward {1e3 * fwd:.2f} ms (minimum of 15), of which conv kernels {1e3 * sum_c:.2f} ms; "
            f"everything else (other layers, Python, numpy) {1e3 * (fwd - sum_c):.2f} ms")
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
        # paths relative to the install roots: the results file must not name this machine's directories
        text = s.getvalue()
        for root in sorted({os.path.dirname(os.path.dirname(megq.__file__)), os.path.dirname(np.__path__[0])},
                           key=len, reverse=True):
            text = text.replace(root + os.sep, "")
        log("\n".join("    " + line for line in text.splitlines() if line.strip())[:6000])
    if args.write:
        cmd = R.command_line("bench" if sys.argv[1:2] == ["profile"] else "bench.profile")
        text = (f"Command: `{cmd}` ({time.perf_counter() - t_start:.0f} s; load "
                f"average at the end {R.loadavg()}). Layer times are minima over the calls (robust to load).\n\n"
                "```\n" + "\n".join(lines_out) + "\n```")
        R.update_subsections("Network latency", _current_preamble(),
                             {f"Profile of megq's {title(net_name, 1)} (--profile)": text})
        print(f"wrote {R.RESULTS}")
    return 0


def _current_preamble() -> str:
    """The Network latency section's preamble as written by the last latency run (kept by --profile)."""
    import re

    text = open(R.RESULTS).read() if os.path.exists(R.RESULTS) else ""
    m = re.search(r"(?ms)^## Network latency\n(.*?)(?=^### |^## |\Z)", text)
    return m.group(1).strip() if m else "See the subsections."



def ort_node_times(path: str, threads: int, x: np.ndarray, runs: int) -> List[tuple]:
    """(op type, megq conv layer of the node or "", minimum seconds over the runs) per node, from ORT's profiler
    (the exported node names carry the torch module path: see :func:`_module_path`)."""
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
        module = _module_path(e["name"])
        per.setdefault(e["name"], [e.get("args", {}).get("op_name", "?"), module, []])[2].append(e["dur"] * 1e-6)
    return [(op, module, min(d[3:] if len(d) > 3 else d)) for op, module, d in per.values()]


def _module_path(node: str) -> str:
    """The megq layer of an exported conv node, or "". The torch exporter names a node by its module scopes, a
    Sequential's child as ``<parent>.<index>`` (``/layer2/layer2.0/conv_bn2/conv/Conv``,
    ``/features/features.1/conv/conv.0/conv/Conv_quant``); the twin's Conv2d is the ``conv`` child of the fused
    module megq has as one leaf (``layer2.0.conv_bn2``, ``features.1.conv.0``)."""
    segs = node.lstrip("/").split("/")[:-1]  # the last segment is the op
    path: List[str] = []
    for i, seg in enumerate(segs):
        prev = segs[i - 1] if i else None
        path.append(seg[len(prev) + 1:] if prev and seg.startswith(prev + ".") else seg)
    return ".".join(path[:-1]) if len(path) > 1 and path[-1] == "conv" else ""


def _start_hook(module, inputs, starts: Dict[int, float]) -> None:
    starts[id(module)] = time.perf_counter()


def _end_hook(module, inputs, output, name: str, starts: Dict[int, float], times: Dict[str, List[float]]) -> None:
    times.setdefault(name, []).append(time.perf_counter() - starts[id(module)])


def _keep_io(module, inputs, output, name: str, feats: Dict[str, object]) -> None:
    feats[name] = (inputs[0], output)


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
    ap.add_argument("--nets", default="resnet18", help=f"the network to profile, one of {sorted(NETS)}")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=6)
    ap.add_argument("--top", type=int, default=12, help="slowest layers to list")
    ap.add_argument("--write", action="store_true", help="update the Network latency section of RESULTS-quant.md")
    return profile(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
