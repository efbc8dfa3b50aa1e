"""Whole networks: megq's Q models (ResNet-18, CIFAR-style ResNet-18, MobileNetV2) against PyTorch int8, ONNX Runtime
int8 and OpenVINO int8 on the same weights, in the same run (the contestants: bench/networks.py), at batch 1
(latency) and batch 8 (throughput).

Timing: contestants are interleaved in rounds (each round runs every contestant ``--calls`` times, the order rotated
from round to round), so load from other processes hits all alike; the median of all per-call times is reported
(after warm-up). The peers' idle thread pools do not spin (ORT allow_spinning 0, torch OMP_WAIT_POLICY=PASSIVE), so
an idle pool cannot steal a core from the next contestant; ``--peer-spin`` leaves them at their defaults and
sleeps ``--settle`` ms between contestants instead. Bars: at batch 1 megq's latency <= 0.9x the best int8 peer's, at
batch > 1 megq's per-image throughput >= 1.1x the best int8 peer's, at every thread count.

Usage: python -m bench latency [--threads 1,2] [--nets resnet18,mobilenet_v2,cifar_resnet18] [--batch 1,8] [--write]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np

from . import _results_md as R
from . import networks as N
from .networks import NETS, Contestant, cosine, log
from .timing import CpuGuard, wait_until_idle

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
SECTION = "Whole networks vs int8 peers"
LATENCY_BAR, THROUGHPUT_BAR = 0.9, 1.1


def run_rounds(cs: List[Contestant], rounds: int, calls: int, warmup: int, wait_idle: float = 0.0,
               settle: float = 0.0) -> Dict[str, float]:
    """``wait_idle`` > 0: before each contestant's calls wait (up to that many seconds) until other processes use
    < 0.15 cores. ``settle`` > 0: sleep that many seconds before each contestant's calls (spinning pools go idle)."""
    for c in cs:
        for _ in range(warmup):
            c.out = np.asarray(c.fn(), dtype=np.float32).reshape(-1)
    guard = CpuGuard().start()
    perf, cpu = time.perf_counter, time.process_time
    for r in range(rounds):
        for c in cs[r % len(cs):] + cs[:r % len(cs)]:
            if wait_idle > 0:
                wait_until_idle(0.15, wait_idle, 0.3)
            if settle > 0:
                time.sleep(settle)
            for _ in range(calls):
                u = cpu()
                t = perf()
                c.fn()
                c.samples.append(perf() - t)
                c.cpu_samples.append(cpu() - u)
    return guard.stop()


def _ratio(megq: Contestant, c: Contestant, batch: int) -> float:
    """batch 1: latency megq / this (< 1: megq faster); batch > 1: throughput megq / this (> 1: megq faster)."""
    return megq.median_ms / c.median_ms if batch == 1 else megq.images_per_s / c.images_per_s


def _verdict(net_name: str, batch: int, n: int, cs: List[Contestant]) -> Tuple[str, Dict[str, object]]:
    megq = cs[0]
    peers = [c for c in cs if c.kind == "int8"]
    best = min(peers, key=lambda c: c.median_ms)
    ratio = _ratio(megq, best, batch)
    met = ratio <= LATENCY_BAR if batch == 1 else ratio >= THROUGHPUT_BAR
    what = ("latency" if batch == 1 else "per-image throughput")
    bar = f"<= {LATENCY_BAR:.2f}x" if batch == 1 else f">= {THROUGHPUT_BAR:.2f}x"
    v = (f"{N.title(net_name, batch)}, {n} thread(s): megq {megq.median_ms:.2f} ms ({megq.images_per_s:.1f} img/s) vs "
         f"best int8 peer {best.name} {best.median_ms:.2f} ms ({best.images_per_s:.1f} img/s) -> {what} ratio "
         f"{ratio:.2f}x ({'MET' if met else 'MISSED'}, bar {bar})")
    if n == 1:
        bc = min(peers, key=lambda c: c.cpu_ms)
        cpu_ratio = megq.cpu_ms / bc.cpu_ms if batch == 1 else bc.cpu_ms / megq.cpu_ms  # same sense as `ratio`
        v += (f"; by process CPU time (load-robust at 1 thread): megq {megq.cpu_ms:.2f} ms vs {bc.name} "
              f"{bc.cpu_ms:.2f} ms -> {cpu_ratio:.2f}x")
    row = dict(net=NETS[net_name]["title"], batch=batch, threads=n, megq=megq, best=best, ratio=ratio, met=met,
               bar=bar)
    return v, row


def _table(net_name: str, batch: int, threads: List[int], by_threads: Dict[int, List[Contestant]]) -> List[str]:
    first = by_threads[threads[0]]
    ref = next(c for c in first if c.name == "torch float traced+frozen").out
    if batch == 1:
        cols = [f"{n} thread{'s' if n > 1 else ''}: median ms (min) | megq / this" for n in threads]
    else:
        cols = [f"{n} thread{'s' if n > 1 else ''}: median ms per batch (img/s) | megq img/s / this" for n in threads]
    hdr = "| contestant | " + " | ".join(cols) + " |"
    ncol = 2 * len(threads)
    if 1 in threads:
        hdr += " 1 thread: process CPU ms | megq / this |"
        ncol += 2
    hdr += " cos vs float |"
    lines = [hdr, "|---|" + "---:|" * (ncol + 1)]
    for i, c0 in enumerate(first):
        cells = []
        for n in threads:
            c, m = by_threads[n][i], by_threads[n][0]
            if batch == 1:
                cells.append(f"{c.median_ms:.2f} ({c.min_ms:.2f}) | {_ratio(m, c, batch):.2f}")
            else:
                cells.append(f"{c.median_ms:.2f} ({c.images_per_s:.1f}) | {_ratio(m, c, batch):.2f}")
        if 1 in threads:
            c, m = by_threads[1][i], by_threads[1][0]
            cells.append(f"{c.cpu_ms:.2f} | {m.cpu_ms / c.cpu_ms:.2f}")
        lines.append(f"| {c0.name} | " + " | ".join(cells) + f" | {cosine(c0.out, ref):.4f} |")
    return lines


def latency(args) -> int:
    threads, batches, nets = N.parse_net_args(args)
    if not args.peer_spin:
        N.quiet_thread_pools()  # before torch is imported
    settle = args.settle / 1e3 if args.peer_spin else 0.0
    t_start = time.perf_counter()
    import onnxruntime
    import torch

    import megq

    cpu, isa = N.cpu_description(), N.megq_isa()
    ov = None if args.no_openvino else N.openvino_version()
    versions = (f"megq {getattr(megq, '__version__', '?')} ({N.megq_build()}), torch {torch.__version__}, "
                f"onnxruntime {onnxruntime.__version__}, " + (f"openvino {ov}" if ov else "no openvino"))
    pools = ("peers' thread pools at their defaults (spinning allowed), "
             f"{args.settle:g} ms pause before each contestant's calls" if args.peer_spin else
             "peers' idle thread pools not spinning (ORT session.intra_op/inter_op.allow_spinning 0, torch "
             f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')})")
    log(f"CPU: {cpu}; {isa}")
    log(f"machine: {R.machine()}; load average {R.loadavg()}")
    log(versions)
    log(f"all contestants in one process, interleaved; {pools}")
    if ov is None:
        log("OpenVINO: skipped (" + ("--no-openvino" if args.no_openvino else
                                      "not installed; pip install openvino, or the megq[bench] extra") + ")")
    prepared: Dict[str, object] = {}
    md: Dict[str, str] = {}
    verdicts: List[str] = []
    rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for net_name in nets:
            for batch in batches:
                by_threads: Dict[int, List[Contestant]] = {}
                loads: Dict[int, Dict[str, object]] = {}
                for n in threads:
                    log(f"[{net_name} batch {batch}] threads {n}: building contestants ...")
                    cs, info = N.build(net_name, n, tmp, prepared, batch=batch, openvino=ov is not None)
                    load_before = R.loadavg()
                    g = run_rounds(cs, args.rounds, args.calls, args.warmup, args.wait_idle, settle)
                    loads[n] = dict(g, loadavg=load_before)
                    by_threads[n] = cs
                    ref = next(c for c in cs if c.name == "torch float traced+frozen").out
                    log(f"[{net_name} batch {batch}] threads {n}: other processes used {g['other_cores']:.2f} cores "
                        f"during the {g['wall']:.0f} s of timing (load average {load_before})")
                    for c in cs:
                        log(f"  {c.name:<60} {c.median_ms:9.2f} ms  min {c.min_ms:8.2f} ms  {c.images_per_s:8.1f} "
                            f"img/s  process CPU {c.cpu_ms:8.2f} ms  (cos vs torch float {cosine(c.out, ref):.4f})")
                    v, row = _verdict(net_name, batch, n, cs)
                    verdicts.append(v)
                    rows.append(row)
                    log("  " + v)
                lines = _table(net_name, batch, threads, by_threads)
                lines.append("")
                info = prepared[net_name]["info"]
                if "openvino_int8" in info:
                    lines.append(f"* OpenVINO runtime graph (int8 model): {info['openvino_int8']}.")
                lines.append(f"* megq: quantize_qat + calibration + quantize {info['megq_convert_s']:.1f} s; first "
                             f"call (packs the weights) {info['megq_first_call_ms']:.0f} ms (excluded).")
                lines.append("* load: " + "; ".join(
                    f"{n} thread(s): load average {loads[n]['loadavg']}, other processes "
                    f"{loads[n]['other_cores']:.2f} cores during timing" for n in threads))
                md[N.title(net_name, batch)] = "\n".join(lines)
    total = time.perf_counter() - t_start
    summary = _summary(rows)
    log("")
    for v in verdicts:
        log(v)
    log("")
    log("\n".join(summary))
    for name, p in prepared.items():
        if "openvino_int8" in p["info"]:
            log(f"OpenVINO runtime graph, {name}: {p['info']['openvino_int8']}")
    log(f"total {total:.0f} s")
    if args.write:
        _write(args, md, summary, cpu, isa, versions, pools, total)
    return 0


def _summary(rows: List[Dict[str, object]]) -> List[str]:
    out = ["| network | batch | threads | megq ms (img/s) | best int8 peer | its ms (img/s) | megq / best (batch 1: "
           "time, > 1: img/s) | bar |",
           "|---|---:|---:|---:|---|---:|---:|---|"]
    for r in rows:
        m, b = r["megq"], r["best"]
        out.append(f"| {r['net']} | {r['batch']} | {r['threads']} | {m.median_ms:.2f} ({m.images_per_s:.1f}) | "
                   f"{b.name} | {b.median_ms:.2f} ({b.images_per_s:.1f}) | **{r['ratio']:.2f}** | "
                   f"{r['bar']} {'met' if r['met'] else 'missed'} |")
    return out


def _command() -> str:
    """The command line of this run, as typed (``python -m bench latency ...`` or ``python -m bench.latency ...``)."""
    return R.command_line("bench" if sys.argv[1:2] == ["latency"] else "bench.latency")


def _write(args, md: Dict[str, str], summary: List[str], cpu: str, isa: str, versions: str, pools: str,
           total: float) -> None:
    """One ``### <CPU>, <ISA path>`` subsection per CPU family in the section (a run on another CPU keeps the
    other CPUs' results)."""
    idle = (f", waiting up to {args.wait_idle:g} s for an idle machine before each contestant"
            if args.wait_idle else "")
    preamble = (
        "Written by `python -m bench latency --write` (bench/latency.py; contestants in bench/networks.py). "
        "Every contestant takes the same float32 NCHW batch and returns float logits; all run interleaved in one "
        "process on the same weights. megq: ema_fakequant_qconfig_per_channel calibrated on 3 random batches of 4; "
        "torch: eager static quantization with the engine's default qconfig (fused conv+bn(+relu), FloatFunctional "
        "add/add_relu), eager and traced+frozen; ORT: quantize_static MinMax per-channel U8/S8 after "
        "quant_pre_process, QDQ and QOperator; OpenVINO: the CPU plugin compiling ORT's QDQ model (LATENCY hint; at "
        "batch > 1 also the THROUGHPUT hint with one stream per thread serving single images in parallel). "
        "Ratios: at batch 1 latency megq / peer (< 1: megq faster; bar <= 0.90 against the best int8 peer), at "
        "batch > 1 per-image throughput megq / peer (> 1: megq faster; bar >= 1.10). cos vs float: cosine "
        "similarity of the logits with torch float (sanity). Only ratios within one run mean anything.")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = [f"Command: `{_command()}` ({total:.0f} s, {when}).",
            f"CPU: {cpu}; {isa}.",
            f"Machine: {R.machine()}; {versions}.",
            f"Median of {args.rounds} rounds x {args.calls} calls per contestant ({args.warmup} warm-up calls{idle}); "
            f"{pools}.", "", *summary, ""]
    for name, text in md.items():
        body += [f"#### {name}", "", text, ""]
    key = f"{cpu.rsplit(', ', 1)[0]}, {isa.split(' (')[0]}"
    R.update_subsections(SECTION, preamble, {key: "\n".join(body)}, path=RESULTS)
    log(f"wrote {RESULTS} (section '{SECTION}', subsection '{key}')")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--nets", default="resnet18,mobilenet_v2,cifar_resnet18", help=f"comma list of {sorted(NETS)}")
    ap.add_argument("--batch", default="1,8", help="batch sizes (1: latency; > 1: per-image throughput)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                    help="before each contestant's calls in a round, wait up to S s for other processes to go idle")
    ap.add_argument("--peer-spin", action="store_true",
                    help="leave the peers' thread pools spinning (their defaults) and pause --settle ms between "
                         "contestants instead")
    ap.add_argument("--settle", type=float, default=30.0, metavar="MS", help="pause with --peer-spin (default 30)")
    ap.add_argument("--no-openvino", action="store_true", help="leave OpenVINO out even when it is installed")
    ap.add_argument("--write", action="store_true",
                    help=f"update the '{SECTION}' section of bench/RESULTS.md (one subsection per CPU and ISA path)")
    args = ap.parse_args(argv)
    return latency(args)


if __name__ == "__main__":
    sys.exit(main())
