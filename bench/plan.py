"""megq's execution plans alone: where a Q network's forward spends its time step by step, what the plan saves
over running layer by layer, and how a batch is best split over the threads (``megq.kernels.Plan``).

For each network, thread count and batch size, interleaved in rounds (load from other processes hits all alike):

* ``layer by layer``: the Q model's forward module by module (``megq.module.quantized.plan.layer_by_layer()``);
* ``plan``: the same call on its prepared plan (``qmodel(x)``, what users get);
* at batch > 1, ``plan.run`` with each batch split: ``layer`` (each kernel splits its layer over the threads) and
  ``batch`` (threads take slices of whole images) with a thread's images run ``chunk`` at a time (0: the plan's
  pick by its arena budget).

Then one profiled plan run per call (``plan.run(profile=True)``, layer split): each step's minimum over the calls,
summed by step kind (conv2d, depthwise, add, quantize, ...). Figures are megq's only (no peers: see
``python -m bench latency`` for the ratios); every variant returns the same bytes, which this suite checks.

Usage: python -m bench plan [--nets resnet18,mobilenet_v2] [--threads 1,2] [--batch 1,8] [--rounds 6] [--write]
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from . import _results_md as R
from . import networks as N
from .networks import NETS, log
from .timing import CpuGuard, wait_until_idle

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
SECTION = "Execution plans (megq alone)"


def _variants(qm, x: np.ndarray, batch: int) -> Tuple[List[Tuple[str, Callable[[], object]]], object]:
    """The timed variants of one network at one batch size, and the plan they share."""
    import megq
    from megq.module.quantized.plan import layer_by_layer

    xt = megq.Tensor(x)
    want = qm(xt).numpy()  # traces the plan for this shape
    runner = qm.__dict__.get("_plan_runner")
    entries = list(runner._st().plans.values()) if runner is not None else []
    plan = entries[-1].plan if entries and entries[-1] is not None else None  # the call above used it last
    if plan is None:
        raise SystemExit("the Q model did not build a plan (see megq.module.quantized.plan.plan_status)")

    def by_layer():
        with layer_by_layer():
            return qm(xt).numpy()

    vs: List[Tuple[str, Callable[[], object]]] = [("layer by layer", by_layer), ("plan", lambda: qm(xt).numpy())]
    if batch > 1:
        vs.append(("plan.run split=layer", lambda: plan.run([x], split="layer")[0]))
        for chunk in sorted({0, 1, 2, 4, batch}):
            vs.append((f"plan.run split=batch chunk={chunk}", lambda c=chunk: plan.run([x], split="batch", chunk=c)[0]))
    for name, fn in vs:  # every way of running gives the same bytes (the plan's contract)
        got = np.asarray(fn())
        if got.size != want.size or not np.array_equal(got.reshape(want.shape), want):  # plan.run: (N, C, 1, 1)
            raise SystemExit(f"{name}: output differs from the plan's (max |diff| {np.abs(got - want).max()})")
    return vs, plan


def _time(vs: List[Tuple[str, Callable[[], object]]], rounds: int, calls: int, wait_idle: float
          ) -> Tuple[Dict[str, List[float]], Dict[str, float]]:
    samples: Dict[str, List[float]] = {name: [] for name, _ in vs}
    for _, fn in vs:  # warm-up
        fn()
    guard = CpuGuard().start()
    for r in range(rounds):
        for name, fn in vs[r % len(vs):] + vs[:r % len(vs)]:
            if wait_idle > 0:
                wait_until_idle(0.15, wait_idle, 0.3)
            fn()  # one untimed call: this variant's buffers and the pool warm again
            for _ in range(calls):
                t = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t)
    return samples, guard.stop()


def _profile(plan, x: np.ndarray, calls: int) -> Tuple[Dict[str, float], float]:
    """Each step's minimum over ``calls`` profiled runs, summed by step kind (seconds), and the sum of all."""
    best: List[float] = []
    names: List[str] = []
    for _ in range(calls):
        _, steps = plan.run([x], profile=True)
        names = [n for n, _ in steps]
        t = [s for _, s in steps]
        best = t if not best else [min(a, b) for a, b in zip(best, t)]
    kinds: Dict[str, float] = collections.Counter()
    for n, s in zip(names, best):
        kinds[n] += s
    return dict(kinds), sum(best)


def _table(net: str, batch: int, threads: List[int], results: Dict[int, dict]) -> List[str]:
    per = batch > 1
    head = "| variant | " + " | ".join(
        f"{n} thread(s): median ms (min)" + (" | img/s" if per else "") for n in threads) + " |"
    lines = [head, "|---|" + "---:|" * (len(threads) * (2 if per else 1))]
    for name in results[threads[0]]["samples"]:
        cells = []
        for n in threads:
            s = np.asarray(results[n]["samples"][name]) * 1e3
            cells.append(f"{np.median(s):.2f} ({s.min():.2f})")
            if per:
                cells.append(f"{batch / np.median(s) * 1e3:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    kinds = sorted({k for n in threads for k in results[n]["kinds"]},
                   key=lambda k: -results[threads[0]]["kinds"].get(k, 0.0))
    lines.append("Profiled plan run (layer split), each step's minimum over the calls, summed by step kind (ms):")
    lines.append("")
    lines.append("| step kind | " + " | ".join(f"{n} thread(s)" for n in threads) + " |")
    lines.append("|---|" + "---:|" * len(threads))
    for k in kinds:
        lines.append(f"| {k} | " + " | ".join(f"{results[n]['kinds'].get(k, 0.0) * 1e3:.3f}" for n in threads) + " |")
    lines.append("| **all steps** | " + " | ".join(f"**{results[n]['total'] * 1e3:.3f}**" for n in threads) + " |")
    lines.append("")
    lines.append("* load: " + "; ".join(f"{n} thread(s): other processes {results[n]['other_cores']:.2f} cores "
                                        f"during timing" for n in threads))
    return lines


def plan_bench(args) -> int:
    threads, batches, nets = N.parse_net_args(args)
    import megq

    t_start = time.perf_counter()
    cpu, isa = N.cpu_description(), N.megq_isa()
    log(f"CPU: {cpu}; {isa}")
    log(f"machine: {R.machine()}; load average {R.loadavg()}")
    md: Dict[str, str] = {}
    for net in nets:
        cfg = NETS[net]
        megq.random.seed(0)
        qm = N.megq_qmodel(cfg["make"](), N.calib_data(cfg["chw"]))
        for batch in batches:
            x = N.net_input(net, batch)
            results: Dict[int, dict] = {}
            for n in threads:
                megq.set_num_threads(n)
                vs, plan = _variants(qm, x, batch)
                samples, guard = _time(vs, args.rounds, args.calls, args.wait_idle)
                kinds, total = _profile(plan, x, max(5, args.calls))
                results[n] = dict(samples=samples, kinds=kinds, total=total, other_cores=guard["other_cores"])
                log(f"[{net} batch {batch}] threads {n} (other processes {guard['other_cores']:.2f} cores):")
                for name, s in samples.items():
                    s = np.asarray(s) * 1e3
                    log(f"  {name:<34} median {np.median(s):8.3f} ms  min {s.min():8.3f} ms")
                log("  profile (sum of step minima by kind, ms): " +
                    ", ".join(f"{k} {v * 1e3:.3f}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])) +
                    f"; all {total * 1e3:.3f}")
            md[N.title(net, batch)] = "\n".join(_table(net, batch, threads, results))
    total_s = time.perf_counter() - t_start
    log(f"total {total_s:.0f} s")
    if args.write:
        cmd = R.command_line("bench" if sys.argv[1:2] == ["plan"] else "bench.plan")
        preamble = ("Written by `python -m bench plan --write` (bench/plan.py): megq's Q networks (the weights and "
                    "calibration of `python -m bench latency`) run layer by layer, through their plan, and with each "
                    "batch split of `Plan.run`; then the plan's own per-step profile. megq only: the ratios against "
                    "peers are in the section above. At 2 threads, separate processes on the 2-vCPU virtual machine "
                    "these figures come from gave MobileNetV2 batch 1 anywhere from 1.12 to 1.95 ms with megq's worker "
                    "taking part in every job (counted), i.e. the two vCPUs ran slower together in some processes "
                    "than in others: compare 2-thread rows within one run only.")
        body = [f"Command: `{cmd}` ({total_s:.0f} s, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
                f"CPU: {cpu}; {isa}.", f"Machine: {R.machine()}.",
                f"Median of {args.rounds} rounds x {args.calls} calls per variant (interleaved, one untimed call "
                f"before each variant's calls).", ""]
        for name, text in md.items():
            body += [f"#### {name}", "", text, ""]
        key = f"{cpu.rsplit(', ', 1)[0]}, {isa.split(' (')[0]}"
        R.update_subsections(SECTION, preamble, {key: "\n".join(body)}, path=RESULTS)
        log(f"wrote {RESULTS} (section '{SECTION}', subsection '{key}')")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", default="resnet18,mobilenet_v2", help=f"comma list of {sorted(NETS)}")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", default="1,8", help="batch sizes (> 1 adds the batch-split variants)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                    help="before each variant's calls in a round, wait up to S s for other processes to go idle")
    ap.add_argument("--write", action="store_true",
                    help=f"update the '{SECTION}' section of bench/RESULTS.md (one subsection per CPU and ISA path)")
    return plan_bench(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
