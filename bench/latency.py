"""Network latency, batch 1: megq's Q ResNet-18 against PyTorch int8 and ONNX Runtime int8 on the same weights, in
the same run (the contestants: bench/networks.py).

Timing: contestants are interleaved in rounds (each round runs every contestant ``--calls`` times), so load from
other processes hits all alike; the median of all per-call times is reported (``--rounds`` x ``--calls`` >= 20
samples, after warm-up). Threads: megq.set_num_threads, torch.set_num_threads, ORT intra_op_num_threads
(inter_op 1). Bar: megq <= 0.9x the best int8 peer at 1 and at 2 threads.

Usage: python -m bench latency [--threads 1,2] [--nets resnet18,cifar_resnet18] [--write]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from typing import Dict, List, Sequence

import numpy as np

import megq

from . import _results_md as R
from .networks import NETS, Contestant, build, cosine, log, megq_build
from .timing import CpuGuard, wait_until_idle


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
        idle = (f", waiting up to {args.wait_idle:g} s for an idle machine before each contestant"
                if args.wait_idle else "")
        pre = (f"Command: `{R.command_line('bench.latency')}` ({total:.0f} s).\n"
               f"Machine: {R.machine()}; {versions}.\n\n"
               f"Median of {args.rounds} rounds x {args.calls} calls per contestant (interleaved rounds, "
               f"{args.warmup} warm-up calls{idle}), batch 1, float32 NCHW input to float logits for every contestant. "
               "megq: ema_fakequant_qconfig_per_channel calibrated on 3 random batches of 4; torch: eager static "
               "quantization with the engine's default qconfig (fused conv+bn+relu, add_relu), same weights; ORT: "
               "quantize_static MinMax per-channel U8/S8 after quant_pre_process. `megq / this` < 1 means megq is "
               "faster. cos vs float: cosine similarity of the logits with torch float (sanity).")
        R.update_subsections("Network latency", pre, {m.split("\n", 1)[0][4:]: m.split("\n", 1)[1] for m in md})
        log(f"wrote {R.RESULTS}")
    return 0


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
    return latency(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
