"""``python -m bench conv``: megq's int8 conv2d on every ResNet-18 conv layer and MobileNetV2's 1x1
layers (224x224, batch 1) against PyTorch quantized Conv2d (x86, fbgemm, onednn engines) and ONNX
Runtime QLinearConv, in the same run, at 1 and 2 threads.

Each contestant runs in its own process (its thread pool's spinning cannot slow down the next
contestant). All contestants get uint8 activations (zero point 128) and per-channel int8 weights and produce
uint8 outputs. PyTorch's input is already quantized and channels_last (its layout is NHWC, like
megq's); ONNX Runtime's QLinearConv is NCHW in and out. GOPS = 2 * Cout * Cin/groups * k^2 * OH * OW / t.
MobileNetV2's depthwise layers are in ``python -m bench.ops`` (depthwise kernels).
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Dict, List

import numpy as np

from .timing import measure, other_load

X_SCALE, X_ZP, Y_SCALE, Y_ZP = 0.05, 128, 0.08, 128

# name, Cin, Cout, input size, kernel, stride, padding
RESNET18 = [
    ("conv1_7x7s2", 3, 64, 224, 7, 2, 3),
    ("l1_3x3_64", 64, 64, 56, 3, 1, 1),
    ("l2_3x3s2_64-128", 64, 128, 56, 3, 2, 1),
    ("l2_3x3_128", 128, 128, 28, 3, 1, 1),
    ("l2_ds_1x1s2_64-128", 64, 128, 56, 1, 2, 0),
    ("l3_3x3_256", 256, 256, 14, 3, 1, 1),
    ("l4_3x3_512", 512, 512, 7, 3, 1, 1),
    ("l3_ds_1x1s2_128-256", 128, 256, 28, 1, 2, 0),
    ("l4_ds_1x1s2_256-512", 256, 512, 14, 1, 2, 0),
]
MOBILENET_V2_1X1 = [
    ("mb_exp_16-96_112", 16, 96, 112, 1, 1, 0),
    ("mb_proj_96-24_56", 96, 24, 56, 1, 1, 0),
    ("mb_exp_24-144_56", 24, 144, 56, 1, 1, 0),
    ("mb_proj_144-32_28", 144, 32, 28, 1, 1, 0),
    ("mb_exp_64-384_14", 64, 384, 14, 1, 1, 0),
    ("mb_proj_384-96_14", 384, 96, 14, 1, 1, 0),
    ("mb_exp_160-960_7", 160, 960, 7, 1, 1, 0),
    ("mb_proj_960-320_7", 960, 320, 7, 1, 1, 0),
    ("mb_last_320-1280_7", 320, 1280, 7, 1, 1, 0),
    ("mb_proj_32-16_112", 32, 16, 112, 1, 1, 0),
    ("mb_proj_144-24_56", 144, 24, 56, 1, 1, 0),
    ("mb_exp_32-192_28", 32, 192, 28, 1, 1, 0),
    ("mb_proj_192-64_14", 192, 64, 14, 1, 1, 0),
    ("mb_exp_96-576_14", 96, 576, 14, 1, 1, 0),
    ("mb_proj_576-96_14", 576, 96, 14, 1, 1, 0),
    ("mb_proj_576-160_7", 576, 160, 7, 1, 1, 0),
    ("mb_proj_960-160_7", 960, 160, 7, 1, 1, 0),
]


class Skip(Exception):
    """A contestant that cannot run here (not installed, engine missing)."""


def problem(cin: int, cout: int, hw: int, k: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    w_scale = rng.uniform(0.002, 0.02, cout)
    return dict(
        x=rng.integers(0, 256, (1, hw, hw, cin)).astype(np.uint8),
        w=rng.integers(-127, 128, (cout, cin, k, k)).astype(np.int8),
        w_scale=w_scale,
        bias=rng.integers(-2000, 2000, cout).astype(np.int32),
        mult=(np.float32(X_SCALE) * w_scale.astype(np.float32) / np.float32(Y_SCALE)).astype(np.float32),
    )


def megq_conv(p: dict, stride: int, pad: int) -> Callable[[], object]:
    import megq.kernels as K

    packed = K.pack_conv2d_weights(p["w"], p["bias"], p["mult"], input_dtype="uint8", input_zero_point=X_ZP)
    x = p["x"]
    return lambda: K.conv2d(x, packed, stride=stride, padding=pad, out_dtype="uint8", out_zero_point=Y_ZP)


def torch_conv(p: dict, stride: int, pad: int, engine: str) -> Callable[[], object]:
    try:
        import torch
    except ImportError:
        raise Skip("torch not installed (pip install torch==2.13.0)") from None
    if engine not in torch.backends.quantized.supported_engines:
        raise Skip(f"engine {engine} not in this torch build")
    torch.backends.quantized.engine = engine
    cout = p["w"].shape[0]
    scales = torch.from_numpy(p["w_scale"])
    w_f = torch.from_numpy(p["w"].astype(np.float32)) * scales[:, None, None, None].float()
    w_q = torch.quantize_per_channel(w_f, scales, torch.zeros(cout, dtype=torch.int64), 0, torch.qint8)
    bias_f = torch.from_numpy((p["bias"] * X_SCALE * p["w_scale"]).astype(np.float32))
    packed = torch.ops.quantized.conv2d_prepack(w_q, bias_f, [stride, stride], [pad, pad], [1, 1], 1)
    x_q = torch._make_per_tensor_quantized_tensor(torch.from_numpy(p["x"]).permute(0, 3, 1, 2), X_SCALE, X_ZP)

    def run():
        torch.backends.quantized.engine = engine
        return torch.ops.quantized.conv2d(x_q, packed, Y_SCALE, Y_ZP)
    return run


def ort_conv(p: dict, stride: int, pad: int, threads: int) -> Callable[[], object]:
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise Skip("onnxruntime/onnx not installed (pip install onnxruntime onnx)") from None
    cout, cin, k, _ = p["w"].shape
    hw = p["x"].shape[1]
    oh = (hw + 2 * pad - k) // stride + 1
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (np.array(X_SCALE, np.float32), "xs"), (np.array(X_ZP, np.uint8), "xz"), (p["w"], "w"),
        (p["w_scale"].astype(np.float32), "ws"), (np.zeros(cout, np.int8), "wz"),
        (np.array(Y_SCALE, np.float32), "ys"), (np.array(Y_ZP, np.uint8), "yz"), (p["bias"], "b")]]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            kernel_shape=[k, k], pads=[pad] * 4, strides=[stride, stride])
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, cin, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, cout, oh, oh])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {"x": np.ascontiguousarray(p["x"].transpose(0, 3, 1, 2))}
    return lambda: sess.run(None, feed)


PEERS = ["torch_x86", "torch_fbgemm", "torch_onednn", "ort_qlinearconv"]


CONTESTANTS = ["megq"] + PEERS


def make(who: str, p: dict, stride: int, pad: int, threads: int) -> Callable[[], object]:
    if who == "megq":
        return megq_conv(p, stride, pad)
    if who.startswith("torch_"):
        return torch_conv(p, stride, pad, who[len("torch_"):])
    return ort_conv(p, stride, pad, threads)


def run_worker(who: str, layers: List[tuple], threads: int, quick: bool) -> Dict[str, dict]:
    """Times one contestant on every layer (called in a subprocess of its own)."""
    import warnings

    if who == "megq":
        import megq
        megq.set_num_threads(threads)
    elif who.startswith("torch_"):
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            pass
    kw = dict(target_s=0.3, min_samples=7) if quick else dict(target_s=1.0, min_samples=15)
    out: Dict[str, dict] = {}
    for name, cin, cout, hw, k, s, pad in layers:
        p = problem(cin, cout, hw, k)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = measure(make(who, p, s, pad, threads), **kw)
            out[name] = {"ms": 1e3 * t.median, "other_cores": t.other_cores}
        except Skip as e:
            out[name] = {"skip": str(e)}
    return out


def run_layers(layers: List[tuple], threads: int, quick: bool, set_name: str) -> List[dict]:
    import json
    import subprocess

    results = {}
    for who in CONTESTANTS:
        cmd = [sys.executable, "-m", "bench.conv", "--worker", who, "--threads", str(threads), "--set", set_name]
        if quick:
            cmd.append("--quick")
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            results[who] = {name: {"skip": done.stderr.strip().splitlines()[-1:] or ["failed"]} for name, *_ in layers}
            continue
        results[who] = json.loads(done.stdout.strip().splitlines()[-1])
    rows = []
    for name, cin, cout, hw, k, s, pad in layers:
        oh = (hw + 2 * pad - k) // s + 1
        row = {"layer": name, "ops": 2.0 * cout * cin * k * k * oh * oh, "ms": {}, "notes": []}
        for who in CONTESTANTS:
            r = results[who].get(name, {})
            if "ms" in r:
                row["ms"][who] = r["ms"]
                if r["other_cores"] > 0.2:
                    row["notes"].append(f"{who}: other processes used {r['other_cores']:.1f} cores")
            else:
                row["notes"].append(f"{who}: {r.get('skip')}")
        rows.append(row)
    return rows


def table(rows: List[dict], threads: int) -> str:
    lines = [f"#### {threads} thread(s): median ms (GOPS); ratio = best peer time / megq time (>1: megq faster)",
             "", "| layer | megq | " + " | ".join(PEERS) + " | best peer / megq |",
             "|---|---|" + "---|" * len(PEERS) + "---|"]
    for r in rows:
        def cell(who: str, r: dict = r) -> str:
            return f"{r['ms'][who]:.3f} ({r['ops'] / r['ms'][who] / 1e6:.0f})" if who in r["ms"] else "–"

        peers = [r["ms"][p] for p in PEERS if p in r["ms"]]
        ratio = f"{min(peers) / r['ms']['megq']:.2f}" if peers and "megq" in r["ms"] else "–"
        lines.append(f"| {r['layer']} | {cell('megq')} | " + " | ".join(cell(p) for p in PEERS) + f" | {ratio} |")
    notes = [n for r in rows for n in r["notes"]]
    if notes:
        lines += ["", "Notes: " + "; ".join(sorted(set(notes)))]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench conv", description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--set", choices=["resnet18", "mobilenetv2", "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="fewer samples (about a minute)")
    ap.add_argument("--worker", choices=CONTESTANTS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    layers = {"resnet18": RESNET18, "mobilenetv2": MOBILENET_V2_1X1, "all": RESNET18 + MOBILENET_V2_1X1}[args.set]
    if args.worker:
        import json
        print(json.dumps(run_worker(args.worker, layers, args.threads[0], args.quick)))
        return 0
    import megq.kernels as K
    print(f"megq ISA: {K.active_isa()}; other processes' load before the run: {other_load():.2f} cores\n")
    for threads in args.threads:
        print(table(run_layers(layers, threads, args.quick, args.set), threads), "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
