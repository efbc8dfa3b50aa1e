"""megq's non-GEMM int8 operators, measured against what a user would otherwise run.

    python -m bench.ops [--threads 1 2] [--quick] [--only mem|dw] [--markdown FILE]

* Memory-bound ops (quantize, dequantize, requantize, add, mul, pools, concat): GB/s of
  (input + output) bytes, against ``np.copyto`` moving the same number of bytes
  (half read, half written) -- numpy's copy is single-threaded, so it is the same
  baseline at every thread count.
* Depthwise 3x3 conv, MobileNetV2 (224x224, batch 1) layers: megq against PyTorch's
  quantized conv2d with groups=C (engines x86, fbgemm, onednn; quint8 activations in
  channels_last, per-channel qint8 weights, fp32 bias) and ONNX Runtime QLinearConv
  (group=C, u8 NCHW activations as ORT's API takes them, s8 per-channel weights,
  int32 bias), all with uint8 activations at zero point 128 and uint8 output.
  Each peer's output is checked against megq's (they round half to even on some
  paths, so |diff| <= 1 is accepted; the share of differing bytes is reported).

Each thread count runs in its own worker process (OMP_NUM_THREADS set before torch is
imported). Per case, contestants are timed round-robin over several rounds (warm-up,
then samples of back-to-back calls >= 2 ms); the figure is the median per-call latency,
Python call overhead included. The machine may be shared: cells measured while other
processes used more than 0.25 cores are marked '*' (before each case the runner waits
up to 8 s for the machine to go quiet).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

import numpy as np

MOBILENET_V2_DW: List[Tuple[int, int, int]] = [  # (H=W, C, stride) of the 3x3 depthwise layers
    (112, 32, 1), (112, 96, 2), (56, 144, 1), (56, 144, 2), (28, 192, 1), (28, 192, 2), (14, 384, 1),
    (14, 576, 1), (14, 576, 2), (7, 960, 1)]
X_ZP, Y_ZP = 128, 128
X_SCALE, Y_SCALE = 0.05, 0.1
CONTENTION = 0.25


def _settings(quick: bool) -> dict:
    if quick:
        return dict(rounds=1, warmup_s=0.02, min_samples=5, target_s=0.03, settle_s=0.005, idle_s=0.0)
    # idle_s: before each case, wait up to this long for other processes to go quiet.
    return dict(rounds=3, warmup_s=0.05, min_samples=7, target_s=0.15, settle_s=0.02, idle_s=8.0)


# ------------------------------------------------------------------ memory-bound ops

def memory_cases(mk) -> List[Tuple[str, str, Callable[[], object], int]]:
    """(name, description, call, bytes moved)."""
    rng = np.random.default_rng(0)
    n, c, h, w = 1, 64, 112, 112
    xf = (rng.standard_normal((n, c, h, w)) * 3).astype(np.float32)
    q = rng.integers(-128, 128, (n, h, w, c)).astype(np.int8)
    q2 = rng.integers(-128, 128, (n, h, w, c)).astype(np.int8)
    gq = rng.integers(-128, 128, (8, 7, 7, 1280)).astype(np.int8)
    ca = rng.integers(-128, 128, (1, 56, 56, 128)).astype(np.int8)
    cb = rng.integers(-128, 128, (1, 56, 56, 128)).astype(np.int8)
    e = q.size
    mp = mk.max_pool2d(q, 3, 2, 1)
    return [
        ("quantize", "float32 NCHW 1x64x112x112 -> int8 NHWC", lambda: mk.quantize(xf, 0.05), 5 * e),
        ("dequantize", "int8 NHWC -> float32 NCHW 1x64x112x112", lambda: mk.dequantize(q, 0.05), 5 * e),
        ("requantize", "int8 802816 values, new scale/zp", lambda: mk.requantize(q, 0.05, 0, 0.07, 3), 2 * e),
        ("add", "int8 1x112x112x64 + int8, 3 qparams", lambda: mk.add(q, q2, a_scale=0.05, b_scale=0.07,
                                                                       out_scale=0.1), 3 * e),
        ("mul", "int8 1x112x112x64 * int8, 3 qparams", lambda: mk.mul(q, q2, a_scale=0.05, b_scale=0.07,
                                                                       out_scale=0.1), 3 * e),
        ("max_pool 3x3 s2 p1", "int8 1x112x112x64 -> 1x56x56x64", lambda: mk.max_pool2d(q, 3, 2, 1),
         e + mp.size),
        ("avg_pool 3x3 s1 p1", "int8 1x112x112x64, count excl. padding", lambda: mk.avg_pool2d(q, 3, 1, 1), 2 * e),
        ("global_avg_pool", "int8 8x7x7x1280 -> 8x1x1x1280", lambda: mk.global_avg_pool2d(gq),
         gq.size + 8 * 1280),
        ("concat", "2 x int8 1x56x56x128 (2 scales) -> 1x56x56x256",
         lambda: mk.concat([ca, cb], [0.05, 0.07], [0, 0], out_scale=0.06), 2 * (ca.size + cb.size)),
    ]


def run_memory(mk, threads: int, cfg: dict) -> dict:
    from .timing import measure, wait_until_idle

    out = {}
    for name, desc, fn, nbytes in memory_cases(mk):
        wait_until_idle(threshold=0.3, timeout=cfg["idle_s"])
        half = max(1, nbytes // 2)
        src = np.ones(half, np.uint8)
        dst = np.empty(half, np.uint8)
        copy = functools.partial(np.copyto, dst, src)
        t_op = t_cp = None
        for _ in range(cfg["rounds"]):
            for which in ("op", "copy"):
                time.sleep(cfg["settle_s"])
                t = measure(fn if which == "op" else copy, warmup_s=cfg["warmup_s"], min_samples=cfg["min_samples"],
                            target_s=cfg["target_s"])
                if which == "op":
                    t_op = t if t_op is None else (t_op.merge(t) or t_op)
                else:
                    t_cp = t if t_cp is None else (t_cp.merge(t) or t_cp)
        out[name] = {"desc": desc, "bytes": nbytes, "op_s": t_op.median, "copy_s": t_cp.median,
                     "op_min_s": min(t_op.samples), "copy_min_s": min(t_cp.samples),
                     "op_gbs": nbytes / t_op.median / 1e9, "copy_gbs": nbytes / t_cp.median / 1e9,
                     "other_cores": max(t_op.other_cores, t_cp.other_cores)}
        r = out[name]
        print(f"[{threads}t] {name:20s} {r['op_gbs']:6.2f} GB/s  copy {r['copy_gbs']:6.2f} GB/s",
              file=sys.stderr, flush=True)
    return out


# ------------------------------------------------------------------ depthwise

class Skip(Exception):
    pass


def dw_problem(H: int, C: int, stride: int, seed: int = 0, x_max: int = 255) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, x_max + 1, (1, H, H, C)).astype(np.uint8)
    w = rng.integers(-127, 128, (C, 3, 3)).astype(np.int8)
    w_scale = rng.uniform(0.002, 0.02, C)
    bias = rng.integers(-2000, 2000, C).astype(np.int32)
    mult = (np.float32(X_SCALE) * w_scale.astype(np.float32) / np.float32(Y_SCALE)).astype(np.float32)
    return dict(H=H, C=C, stride=stride, x=x, w=w, w_scale=w_scale, bias=bias, mult=mult)


def dw_megq(mk, p: dict) -> Tuple[Callable[[], object], Callable[[], np.ndarray]]:
    packed = mk.pack_depthwise_weights(p["w"], p["bias"], p["mult"], input_dtype="uint8", input_zero_point=X_ZP)
    x, s = p["x"], p["stride"]
    fn = lambda: mk.depthwise_conv2d(x, packed, s, 1, out_dtype="uint8", out_zero_point=Y_ZP)  # noqa: E731
    return fn, fn


def dw_torch(p: dict, engine: str):
    import torch

    if engine not in torch.backends.quantized.supported_engines:
        raise Skip(f"engine {engine} not supported by this torch build")
    torch.backends.quantized.engine = engine
    C, s = p["C"], p["stride"]
    scales = torch.from_numpy(p["w_scale"].astype(np.float64))
    w_f = torch.from_numpy(p["w"].astype(np.float32)[:, None]) * scales[:, None, None, None].float()
    w_q = torch.quantize_per_channel(w_f, scales, torch.zeros(C, dtype=torch.int64), 0, torch.qint8)
    bias_f = torch.from_numpy((p["bias"].astype(np.float64) * X_SCALE * p["w_scale"]).astype(np.float32))
    packed = torch.ops.quantized.conv2d_prepack(w_q, bias_f, [s, s], [1, 1], [1, 1], C)
    x_q = torch._make_per_tensor_quantized_tensor(torch.from_numpy(p["x"]).permute(0, 3, 1, 2), X_SCALE, X_ZP)
    assert x_q.is_contiguous(memory_format=torch.channels_last)

    def fn():
        torch.backends.quantized.engine = engine
        return torch.ops.quantized.conv2d(x_q, packed, Y_SCALE, Y_ZP)

    def result():
        return fn().int_repr().permute(0, 2, 3, 1).numpy()
    return fn, result


def dw_ort(p: dict, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    H, C, s = p["H"], p["C"], p["stride"]
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (np.array(X_SCALE, np.float32), "xs"), (np.array(X_ZP, np.uint8), "xz"), (p["w"][:, None], "w"),
        (p["w_scale"].astype(np.float32), "ws"), (np.zeros(C, np.int8), "wz"), (np.array(Y_SCALE, np.float32), "ys"),
        (np.array(Y_ZP, np.uint8), "yz"), (p["bias"], "b")]]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], group=C,
                            kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[s, s])
    OH = (H + 2 - 3) // s + 1
    graph = helper.make_graph([node], "dw", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, C, H, H])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, C, OH, OH])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {"x": np.ascontiguousarray(p["x"].transpose(0, 3, 1, 2))}
    fn = lambda: sess.run(None, feed)  # noqa: E731
    return fn, lambda: fn()[0].transpose(0, 2, 3, 1)


DW_NAMES = ["megq", "torch_x86", "torch_fbgemm", "torch_onednn", "ort"]


def run_depthwise(mk, threads: int, cfg: dict) -> dict:
    import warnings

    from .timing import measure

    warnings.filterwarnings("ignore")
    try:
        import torch
        torch.set_num_threads(threads)
    except Exception:  # noqa: BLE001
        torch = None
    out = {}
    from .timing import wait_until_idle

    for H, C, s in MOBILENET_V2_DW:
        wait_until_idle(threshold=0.3, timeout=cfg["idle_s"])
        p = dw_problem(H, C, s)
        key = f"{H}x{H}x{C} s{s}"
        built: Dict[str, object] = {}
        for name in DW_NAMES:
            try:
                if name == "megq":
                    built[name] = dw_megq(mk, p)
                elif name.startswith("torch_"):
                    if torch is None:
                        raise Skip("torch not installed")
                    built[name] = dw_torch(p, name[len("torch_"):])
                else:
                    built[name] = dw_ort(p, threads)
            except Exception as e:  # noqa: BLE001
                built[name] = Skip(f"{type(e).__name__}: {str(e).splitlines()[0][:100]}")
        ref = built["megq"][1]().astype(np.int32)
        entry: Dict[str, dict] = {}
        live = []
        probe = None
        for name in DW_NAMES:
            b = built[name]
            if isinstance(b, Exception):
                entry[name] = {"skip": str(b)}
                continue
            got = np.asarray(b[1]()).astype(np.int32)
            diff = np.abs(got - ref) if got.shape == ref.shape else None
            if diff is not None and diff.max() <= 1:
                entry[name] = {"max_diff": int(diff.max()), "diff_share": float(np.count_nonzero(diff)) / diff.size}
                live.append(name)
                continue
            # vpmaddubsw kernels saturate int16 pair sums with 8-bit activations (PyTorch's
            # x86/fbgemm qconfigs use reduce_range: 7-bit activations). Check them on 7-bit data.
            if probe is None:
                probe = dw_problem(H, C, s, seed=1, x_max=127)
            try:
                if name.startswith("torch_"):
                    pf = dw_torch(probe, name[len("torch_"):])
                else:
                    pf = dw_ort(probe, threads)
                pref = dw_megq(mk, probe)[1]().astype(np.int32)
                pdiff = np.abs(np.asarray(pf[1]()).astype(np.int32) - pref)
                ok7 = pdiff.max() <= 1
            except Exception:  # noqa: BLE001
                ok7 = False
            if not ok7:
                entry[name] = {"skip": "output differs from megq by more than 1 LSB"}
                continue
            entry[name] = {"max_diff": int(diff.max()) if diff is not None else -1,
                           "diff_share": float(np.count_nonzero(diff)) / diff.size if diff is not None else 1.0,
                           "saturates": True}
            live.append(name)
        timings = {}
        for r in range(cfg["rounds"]):
            order = live[r % len(live):] + live[:r % len(live)]
            for name in order:
                time.sleep(cfg["settle_s"])
                t = measure(built[name][0], warmup_s=cfg["warmup_s"], min_samples=cfg["min_samples"],
                            target_s=cfg["target_s"])
                if name in timings:
                    timings[name].merge(t)
                else:
                    timings[name] = t
        for name, t in timings.items():
            entry[name].update({"median_s": t.median, "min_s": min(t.samples), "other_cores": t.other_cores})
        out[key] = entry
        msg = "  ".join(f"{n}={entry[n]['median_s'] * 1e6:.0f}us" for n in DW_NAMES if "median_s" in entry[n])
        print(f"[{threads}t] dw {key}: {msg}", file=sys.stderr, flush=True)
    return out


# ------------------------------------------------------------------ driver

def run_worker(threads: int, quick: bool, only: str) -> dict:
    import megq.kernels as mk

    mk.set_num_threads(threads)
    cfg = _settings(quick)
    res = {"threads": threads, "isa": mk.active_isa()}
    if only in ("all", "mem"):
        res["memory"] = run_memory(mk, threads, cfg)
    if only in ("all", "dw"):
        res["depthwise"] = run_depthwise(mk, threads, cfg)
    return res


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}")


def _flag(other: float) -> str:
    return "*" if other > CONTENTION else ""


def to_markdown(results: List[dict], command: str) -> str:
    lines = [f"Command: `{command}`", "", f"Machine: {machine()}", ""]
    try:
        import megq.kernels as mk
        lines.append(f"megq ISA: {mk.active_isa()} (usable: {', '.join(mk.cpu_info()['usable'])})")
    except Exception:  # noqa: BLE001
        pass
    versions = []
    for mod in ("numpy", "torch", "onnxruntime"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except Exception:  # noqa: BLE001
            pass
    lines += [f"Versions: {', '.join(versions)}", ""]
    mem = [r for r in results if "memory" in r]
    if mem:
        lines += ["### Memory-bound ops: GB/s of (input + output) bytes vs np.copyto of the same bytes", ""]
        head = "| op | shape | " + " | ".join(f"megq {r['threads']}t GB/s | x copy" for r in mem) + " | copy GB/s |"
        lines += [head, "|" + "---|" * (2 + 2 * len(mem) + 1)]
        for name in mem[0]["memory"]:
            cells = []
            for r in mem:
                e = r["memory"][name]
                cells += [f"{e['op_gbs']:.2f}{_flag(e['other_cores'])}", f"{e['copy_s'] / e['op_s']:.2f}"]
            e0 = mem[0]["memory"][name]
            lines.append(f"| {name} | {e0['desc']} | " + " | ".join(cells) + f" | {e0['copy_gbs']:.2f} |")
        def best_gbs(name: str) -> str:
            return "/".join(f"{r['memory'][name]['bytes'] / r['memory'][name]['op_min_s'] / 1e9:.1f}" for r in mem)

        lines += ["", "Best-sample GB/s (less sensitive to other processes): " + "; ".join(
            f"{name} {best_gbs(name)}" for name in mem[0]["memory"]) +
            f" (threads {'/'.join(str(r['threads']) for r in mem)}); copy " +
            "/".join(f"{max(r['memory'][n]['bytes'] / r['memory'][n]['copy_min_s'] / 1e9 for n in r['memory']):.0f}"
                     for r in mem) + " GB/s at best", ""]
    dws = [r for r in results if "depthwise" in r]
    for r in dws:
        t = r["threads"]
        lines += [f"### Depthwise 3x3 (MobileNetV2 layers, batch 1), {t} thread(s): latency in us, median "
                  f"(best sample), and megq's speed-up over each peer (peer time / megq time) on medians "
                  f"(on best samples)", ""]
        lines += ["| layer | megq | " + " | ".join(f"{n} | x" for n in DW_NAMES[1:]) + " |",
                  "|" + "---|" * (2 + 2 * (len(DW_NAMES) - 1))]
        for key, e in r["depthwise"].items():
            m, mb = e["megq"].get("median_s"), e["megq"].get("min_s")
            cells = [f"{m * 1e6:.0f}{_flag(e['megq']['other_cores'])} ({mb * 1e6:.0f})" if m else "-"]
            for n in DW_NAMES[1:]:
                if "median_s" in e.get(n, {}):
                    cells += [f"{e[n]['median_s'] * 1e6:.0f}{_flag(e[n]['other_cores'])} ({e[n]['min_s'] * 1e6:.0f})",
                              f"{e[n]['median_s'] / m:.2f} ({e[n]['min_s'] / mb:.2f})" if m else "-"]
                else:
                    cells += ["skip", "-"]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        tot = {n: sum(e[n]["median_s"] for e in r["depthwise"].values() if "median_s" in e.get(n, {}))
               for n in DW_NAMES}
        full = {n: all("median_s" in e.get(n, {}) for e in r["depthwise"].values()) for n in DW_NAMES}
        cells = [f"{tot['megq'] * 1e6:.0f}"]
        for n in DW_NAMES[1:]:
            cells += [f"{tot[n] * 1e6:.0f}", f"{tot[n] / tot['megq']:.2f}"] if full[n] and tot["megq"] else ["-", "-"]
        lines.append("| **all 10 layers** | " + " | ".join(cells) + " |")
        best = {n: sum(e[n]["min_s"] for e in r["depthwise"].values() if "min_s" in e.get(n, {})) for n in DW_NAMES}
        lines += ["", "Sum of best samples over the 10 layers (less sensitive to other processes), us: " +
                  ", ".join(f"{n} {best[n] * 1e6:.0f}" + (f" ({best[n] / best['megq']:.2f}x megq)" if n != "megq" and
                                                          full[n] and best["megq"] else "")
                            for n in DW_NAMES if full[n])]
        diffs = {n: max((e[n].get("diff_share", 0.0) for e in r["depthwise"].values()
                         if n in e and not e[n].get("saturates")), default=0.0)
                 for n in DW_NAMES[1:] if not any(e.get(n, {}).get("saturates") for e in r["depthwise"].values())}
        lines += ["", "Output agreement with megq on full-range uint8 activations (within 1 LSB; largest share of "
                  "differing bytes per layer): " +
                  ", ".join(f"{n} {v * 100:.3f}%" for n, v in diffs.items()), ""]
        sat = sorted({n for e in r["depthwise"].values() for n in DW_NAMES if e.get(n, {}).get("saturates")})
        if sat:
            lines += [f"Saturating peers: {', '.join(sat)} agree with megq (within 1 LSB) only on 7-bit activations "
                      "(0..127, PyTorch's reduce_range); with full-range uint8 activations their int16 pair sums "
                      "saturate and the outputs are wrong (they are timed on the same full-range data as the "
                      "others; the data does not change their speed).", ""]
        skips = {n: e[n]["skip"] for e in r["depthwise"].values() for n in DW_NAMES if "skip" in e.get(n, {})}
        if skips:
            lines += ["Skipped: " + "; ".join(f"{n}: {v}" for n, v in skips.items()), ""]
    lines += ["'*' = measured while other processes used more than 0.25 cores (shared machine).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ops", description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quick", action="store_true", help="one short round (smoke test)")
    ap.add_argument("--only", choices=["all", "mem", "dw"], default="all")
    ap.add_argument("--markdown", help="also write the tables to this file")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.quick, args.only)))
        return 0
    results = []
    for t in args.threads:
        env = dict(os.environ, OMP_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "bench.ops", "--worker", str(t), "--only", args.only]
        if args.quick:
            cmd.append("--quick")
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, check=True, text=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    command = "python -m bench.ops " + " ".join(argv if argv is not None else sys.argv[1:])
    md = to_markdown(results, command.strip())
    print(md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("# megq operator benchmarks (bench/ops.py)\n\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
