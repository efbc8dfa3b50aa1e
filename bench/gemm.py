"""megq int8 GEMM against the peers' int8 GEMMs, same shapes, same run.

    python -m bench gemm [--threads 1 2] [--shapes 64x64x576 ...] [--quick] [--markdown FILE]

Each thread count runs in its own worker process (OMP_NUM_THREADS set before
torch is imported; megq.set_num_threads, torch.set_num_threads, ORT
intra_op_num_threads). Inside a worker, for each shape every contestant is
timed in several rounds, round-robin, with a short pause between contestants
so that the previous library's spinning workers go to sleep; a round is
warm-up + samples of back-to-back calls (>= 2 ms each); the figure is the
median per-call latency over all samples, Python call overhead included.

Peak: one thread's peak of the active ISA's dot-instruction mix from
megq.kernels.measure_peak_gops (best of a few runs); the 2-thread denominator
is 2x the 1-thread peak. Both threads' peak measured concurrently (two
processes) is printed too, as a check on how the two vCPUs scale.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

DEFAULT_SHAPES: List[Tuple[int, int, int]] = [
    (1, 1000, 512), (64, 64, 576), (3136, 64, 576), (784, 128, 1152), (196, 256, 2304),
    (49, 512, 4608), (512, 512, 512), (1024, 1024, 1024), (128, 4096, 4096)]

CONTENTION_FLAG = 0.25  # other processes' cores above which a cell gets a '*'


def parse_shape(text: str) -> Tuple[int, int, int]:
    parts = text.lower().replace(",", "x").split("x")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected MxNxK")
    return tuple(int(x) for x in parts)  # type: ignore[return-value]


def shape_name(s: Sequence[int]) -> str:
    return "x".join(str(x) for x in s)


# ------------------------------------------------------------------ worker

def _settings(quick: bool) -> dict:
    # slow_s: a contestant whose single call takes longer (a fallback path such as
    # torch._int_mm without VNNI, ~100x slower) gets slow_samples single-call samples
    # in the first round only, without warm-up beyond the check call.
    if quick:
        return dict(rounds=1, warmup_s=0.03, min_samples=5, target_s=0.04, settle_s=0.01,
                    slow_s=0.1, slow_samples=1)
    return dict(rounds=3, warmup_s=0.1, min_samples=7, target_s=0.3, settle_s=0.03,
                slow_s=0.25, slow_samples=3)


def run_worker(threads: int, shapes: List[Tuple[int, int, int]], quick: bool, guard_wait: float = 0.0,
               guard_retries: int = 1, only: Optional[Sequence[str]] = None) -> dict:
    """Times every contestant on every shape at ``threads`` threads (this process)."""
    import warnings

    import numpy as np  # noqa: F401

    # torch warns that quantized tensor constructors are deprecated; the op is what users have today.
    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
    from . import peers_gemm as pg
    from .timing import Timing, measure, wait_until_idle

    try:
        import megq.kernels as mk
        mk.set_num_threads(threads)
    except Exception:  # noqa: BLE001
        mk = None
    cfg = _settings(quick)
    results = {"threads": threads, "shapes": {}, "notes": {}, "sat_probe": {}}
    # Correctness with 7-bit activations (no int16 saturation possible in
    # vpmaddubsw kernels), to tell saturation from a broken set-up.
    probe = pg.make_problem(64, 64, 576, a_max=127)
    for name, c in pg.build_all(probe, threads).items():
        if not isinstance(c, pg.Skip):
            try:
                c.prepare()
                results["sat_probe"][name] = c.check()
            except Exception as e:  # noqa: BLE001
                results["sat_probe"][name] = f"error {type(e).__name__}"
    del probe
    for shape in shapes:
        p = pg.make_problem(*shape)
        built = pg.build_all(p, threads)
        entry = {}
        live = []
        first_timings = {}
        for name in pg.ALL_NAMES:
            c = built[name]
            if only and name not in only:
                c = pg.Skip("not selected (--contestants)")
            if isinstance(c, pg.Skip):
                entry[name] = {"skip": str(c)}
                continue
            first = None
            try:
                c.prepare()
                t_first = time.perf_counter()
                c.fn()
                t_first = time.perf_counter() - t_first
                slow = t_first > cfg["slow_s"]
                if slow and quick:  # --quick: the first call is the one sample, no check
                    check = "not checked (--quick, slow)"
                    first = Timing(samples=[t_first], wall=t_first)
                else:
                    check = c.check()
            except Exception as e:  # noqa: BLE001
                entry[name] = {"skip": f"check failed: {type(e).__name__}: {e}"}
                continue
            results["notes"].setdefault(name, c.note)
            entry[name] = {"check": check, "slow": slow}
            if first is not None:
                first_timings[name] = first
            else:
                live.append(c)
        timings = dict(first_timings)
        for r in range(cfg["rounds"]):
            order = live[r % max(1, len(live)):] + live[:r % max(1, len(live))]
            for c in order:
                slow = entry[c.name]["slow"]
                if slow and r > 0:
                    continue
                c.prepare()
                time.sleep(cfg["settle_s"])
                if slow:
                    t = measure(c.fn, warmup_s=0.0, min_samples=cfg["slow_samples"], target_s=0.0, calls=1,
                                skip_first=True)
                else:
                    # Contention guard: wait (briefly) for other processes to go quiet, and
                    # re-take a block that saw load, keeping the least disturbed one.
                    t = None
                    for _ in range(1 + (guard_retries if not quick else 0)):
                        if guard_wait > 0:
                            wait_until_idle(threshold=CONTENTION_FLAG, timeout=guard_wait, probe=0.1)
                        tt = measure(c.fn, warmup_s=cfg["warmup_s"], min_samples=cfg["min_samples"],
                                     target_s=cfg["target_s"])
                        if t is None or tt.other_cores < t.other_cores:
                            t = tt
                        if t.other_cores <= CONTENTION_FLAG:
                            break
                if c.name in timings:
                    timings[c.name].merge(t)
                else:
                    timings[c.name] = t
        for name, t in timings.items():
            entry[name].update({"median_s": t.median, "samples": len(t.samples),
                                "calls_per_sample": t.calls_per_sample,
                                "other_cores": t.other_cores, "steal_cores": t.steal_cores,
                                "min_s": min(t.samples), "gops": p.ops / t.median / 1e9})
        results["shapes"][shape_name(shape)] = entry
        msg = "  ".join(f"{n}={entry[n]['gops']:.0f}" for n in pg.ALL_NAMES if "gops" in entry[n])
        print(f"[{threads}t] {shape_name(shape)}: {msg}", file=sys.stderr, flush=True)
        del p, built, live
    return results


def _peak_child(isa: str, seconds: float, reps: int) -> float:
    import megq.kernels as mk

    return max(mk.measure_peak_gops(isa, seconds) for _ in range(reps))


def measure_peaks(quick: bool) -> dict:
    import multiprocessing as mp

    import megq.kernels as mk

    isa = mk.active_isa()
    secs, reps = (0.1, 2) if quick else (0.3, 5)
    out = {"isa": isa, "cpu_info": mk.cpu_info()}
    out["peak_1t"] = _peak_child(isa, secs, reps)
    out["peak_avx2_1t"] = _peak_child("avx2", secs, reps) if "avx2" in mk.cpu_info()["usable"] else 0.0
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        both = pool.starmap(_peak_child, [(isa, secs, reps)] * 2)
    out["peak_2t_concurrent"] = sum(both)
    out["peak_2t"] = 2 * out["peak_1t"]
    out["peak_avx2_2t"] = 2 * out["peak_avx2_1t"]
    try:
        from .isa_peak import measure as isa_measure
        out["isa_check"] = isa_measure(reps=2 if quick else 3)
    except Exception:  # noqa: BLE001
        out["isa_check"] = None
    return out


# ------------------------------------------------------------------ reporting

def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                fam = {ln.split(":")[0].strip(): ln.split(":", 1)[1].strip() for ln in out.splitlines() if ":" in ln}
                return (f"{model} (family {fam.get('CPU family', '?')}, model {fam.get('Model', '?')}), "
                        f"{fam.get('CPU(s)', '?')} vCPUs, L2 {fam.get('L2 cache', '?')}, L3 {fam.get('L3 cache', '?')}")
    except Exception:  # noqa: BLE001
        pass
    return platform.processor() or "unknown CPU"


def _versions() -> str:
    vs = []
    for mod in ("megq", "numpy", "onnxruntime", "onnx", "torch"):
        try:
            m = __import__(mod)
            vs.append(f"{mod} {getattr(m, '__version__', '?')}")
        except Exception:  # noqa: BLE001
            vs.append(f"{mod} not installed")
    return ", ".join(vs)


def _fmt_ms(s: float) -> str:
    ms = s * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def render(results: List[dict], peaks: dict, shapes, command: str, meta: dict) -> str:
    from .peers_gemm import ALL_NAMES, PEER_NAMES

    lines: List[str] = []
    add = lines.append
    add(f"Command: `{command}`  ")
    add(f"Machine: {meta['cpu']}; ISA megq used: **{peaks['isa']}**  ")
    add(f"Versions: {meta['versions']}  ")
    add(f"Peak (megq.kernels.measure_peak_gops, best of runs): {peaks['isa']} 1 thread "
        f"**{peaks['peak_1t']:.1f} GOPS**; "
        f"2-thread denominator = 2x = {peaks['peak_2t']:.1f} GOPS (both vCPUs measured concurrently: "
        f"{peaks['peak_2t_concurrent']:.1f}); avx2 1 thread {peaks['peak_avx2_1t']:.1f} GOPS.  ")
    chk = peaks.get("isa_check")
    if chk:
        add(f"Independent AVX2 check (bench/isa_peak.py: spill-free asm loops, best of short runs, 1 thread, "
            f"clock {chk['ghz']:.2f} GHz from a dependent-add chain): vpmaddwd+vpaddd **{chk['vpmaddwd']:.1f} GOPS** "
            f"({chk['vpmaddwd_per_cycle']:.2f}/cycle); MLAS-style vpmaddubsw+vpmaddwd(1)+vpaddd {chk['mlas']:.1f} GOPS "
            f"({chk['mlas_per_cycle']:.2f}/cycle); vpmaddubsw+vpaddsw (int16 accumulation, saturating) "
            f"{chk['ubsw_i16']:.1f} GOPS.  ")
    add(f"Load by other processes before the run: {meta['load_before']:.2f} cores; "
        f"started {meta['started']}, took {meta['elapsed']:.0f} s. Cells marked `*` saw other processes using "
        f">{CONTENTION_FLAG} cores while they were timed.")
    add("")
    for res in results:
        th = res["threads"]
        peak = peaks["peak_1t"] * th
        peak_avx2 = peaks["peak_avx2_1t"] * th
        add(f"#### GEMM, {th} thread(s): GOPS (median ms) [fraction of {th}x{peaks['peak_1t']:.0f} GOPS "
            f"{peaks['isa']} peak]")
        add("")
        add("| contestant | out | " + " | ".join(shape_name(s) for s in shapes) + " |")
        add("|---|---|" + "---|" * len(shapes))
        max_other = 0.0
        for name in ALL_NAMES:
            cells = []
            kind = ""
            for s in shapes:
                e = res["shapes"][shape_name(s)].get(name, {})
                if "gops" not in e:
                    cells.append("–")
                    continue
                kind = "i32" if name in ("megq_i32", "ort_mmi", "torch_intmm") else "i8/u8"
                pk = peak_avx2 if name == "megq_avx2_i8" else peak
                star = "*" if e["other_cores"] > CONTENTION_FLAG else ""
                max_other = max(max_other, e["other_cores"])
                chk = "" if e.get("check") in ("exact", "not checked (--quick, slow)") else " †"
                cells.append(f"{e['gops']:.0f} ({_fmt_ms(e['median_s'])}) [{100 * e['gops'] / pk:.0f}%]{star}{chk}")
            label = f"**{name}**" if name.startswith("megq") else name
            add(f"| {label} | {kind} | " + " | ".join(cells) + " |")
        add("")
        add(f"megq_avx2_i8's bracket is relative to the avx2 peak ({th}x{peaks['peak_avx2_1t']:.0f}). "
            f"Max load by other processes during any cell: {max_other:.2f} cores.")
        add("")
        # Ratios
        for mname in ("megq_i8", "megq_i32"):
            add(f"#### {th} thread(s): {mname} / peer (ratio of median GOPS; > 1 means megq is faster)")
            add("")
            add("| shape | best peer (median GOPS) | " + mname + " / best | same, fastest samples | "
                + " | ".join(PEER_NAMES) + " |")
            add("|---|---|---|---|" + "---|" * len(PEER_NAMES))
            for s in shapes:
                ent = res["shapes"][shape_name(s)]
                me = ent.get(mname, {})
                peers = {n: ent[n] for n in PEER_NAMES if "gops" in ent.get(n, {})}
                if "gops" not in me or not peers:
                    add(f"| {shape_name(s)} | – | – | – |" + " – |" * len(PEER_NAMES))
                    continue
                best = max(peers, key=lambda n: peers[n]["gops"])
                ratio = me["gops"] / peers[best]["gops"]
                # Noise cross-check: the fastest sample of megq against the fastest of any peer.
                best_min = min(peers, key=lambda n: peers[n]["min_s"])
                ratio_min = peers[best_min]["min_s"] / me["min_s"]
                mark = "**" if ratio >= 1 else ""
                cells = [f"{me['gops'] / peers[n]['gops']:.2f}" if n in peers else "–" for n in PEER_NAMES]
                add(f"| {shape_name(s)} | {best} ({peers[best]['gops']:.0f}) | {mark}{ratio:.2f}{mark} | "
                    f"{ratio_min:.2f} ({best_min}) | " + " | ".join(cells) + " |")
            add("")
        add("\"Same, fastest samples\": megq's fastest sample against the fastest sample of any peer, a cross-check "
            "that is less sensitive to bursts of load from other processes than the median.")
        add("")
    # notes
    notes: Dict[str, str] = {}
    skips: Dict[str, set] = {}
    checks: Dict[str, set] = {}
    for res in results:
        notes.update(res["notes"])
        for sn, ent in res["shapes"].items():
            for name, e in ent.items():
                if "skip" in e:
                    skips.setdefault(name, set()).add(f"{sn}: {e['skip']}")
                elif e.get("check") not in (None, "exact"):
                    checks.setdefault(name, set()).add(f"{sn}: {e['check']}")
    slow = sorted({f"`{n}` {sn}" for res in results for sn, ent in res["shapes"].items()
                   for n, e in ent.items() if e.get("slow")})
    if slow:
        add("Slow contestants (one call > the slow limit) were timed with only a few single-call samples: "
            + ", ".join(slow) + ".")
        add("")
    add("Contestants:")
    add("")
    for name in ALL_NAMES:
        add(f"* `{name}`: {notes.get(name, 'not run')}")
    for name, items in skips.items():
        reasons = {i.split(": ", 1)[1] for i in items}
        add(f"* skipped `{name}`: " + (reasons.pop() if len(reasons) == 1 else "; ".join(sorted(items))))
    add("")
    add("Checks (`†` in a cell: the output was not exact): int32 outputs compared bit-exact with sum (a-128)*w; "
        "requantized outputs with a reference of each contestant's own requantization (megq: float32 product, "
        "others: float64; round half away). Data: uniform random A in [0, 255] (zero point 128), W in [-127, 127]. "
        + ("All exact." if not checks else "Differences: " + "; ".join(
            f"`{n}` {', '.join(sorted(v))}" for n, v in checks.items()) + "."))
    probe = {}
    for res in results:
        for n, c in res.get("sat_probe", {}).items():
            probe.setdefault(n, set()).add(c)
    if probe:
        add("Same check on 64x64x576 with A limited to [0, 127] (no int16 overflow possible in vpmaddubsw pair "
            "sums): " + ", ".join(f"`{n}` {'/'.join(sorted(v))}" for n, v in probe.items()) + ".")
    add("")
    return "\n".join(lines)


# ------------------------------------------------------------------ main

def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench gemm", description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--shapes", type=parse_shape, nargs="+", default=None, metavar="MxNxK")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (< 1 minute)")
    ap.add_argument("--markdown", metavar="FILE", help="also write the tables to FILE")
    ap.add_argument("--json", metavar="FILE", help="also write the raw results to FILE")
    ap.add_argument("--idle-timeout", type=float, default=None,
                    help="seconds to wait for other processes to go quiet before each worker "
                         "(default 60, 5 with --quick)")
    ap.add_argument("--contestants", nargs="+", default=None, metavar="NAME",
                    help="time only these (default: all of megq_i8 megq_i32 megq_avx2_i8 ort_mmi ort_qlmm "
                         "torch_x86 torch_fbgemm torch_onednn torch_intmm)")
    ap.add_argument("--guard-wait", type=float, default=None,
                    help="before each timing block wait up to this many seconds for other processes to use "
                         f"< {CONTENTION_FLAG} cores, and re-take (once) a block that saw more "
                         "(default 1; 0 with --quick)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    shapes = args.shapes or DEFAULT_SHAPES

    if args.guard_wait is None:
        args.guard_wait = 0.0 if args.quick else 1.0
    if args.worker:  # one thread count, results as JSON on stdout
        res = run_worker(args.threads[0], shapes, args.quick, guard_wait=args.guard_wait, only=args.contestants)
        print(json.dumps(res))
        return 0

    from .timing import other_load, wait_until_idle

    command = "python -m bench gemm" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.perf_counter()
    idle_timeout = args.idle_timeout if args.idle_timeout is not None else (5.0 if args.quick else 60.0)
    load_before = wait_until_idle(timeout=idle_timeout)
    try:
        peaks = measure_peaks(args.quick)
    except Exception as e:  # noqa: BLE001
        print(f"megq peak measurement failed ({e}); fractions of peak will be meaningless", file=sys.stderr)
        peaks = {"isa": "?", "peak_1t": float("nan"), "peak_avx2_1t": float("nan"),
                 "peak_2t": float("nan"), "peak_2t_concurrent": float("nan")}
    print(f"peak {peaks['isa']}: 1t {peaks['peak_1t']:.1f} GOPS, 2t concurrent {peaks['peak_2t_concurrent']:.1f}, "
          f"avx2 1t {peaks['peak_avx2_1t']:.1f}", file=sys.stderr, flush=True)

    results = []
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for th in args.threads:
        wait_until_idle(timeout=idle_timeout)
        env = dict(os.environ, OMP_NUM_THREADS=str(th), MKL_NUM_THREADS=str(th))
        cmd = [sys.executable, "-m", "bench", "gemm", "--worker", "--threads", str(th), "--guard-wait",
               str(args.guard_wait)] + (["--contestants", *args.contestants] if args.contestants else []) + [
               "--shapes", *[shape_name(s) for s in shapes]] + (["--quick"] if args.quick else [])
        proc = subprocess.run(cmd, cwd=here, env=env, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            print(f"worker for {th} thread(s) failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    meta = {"cpu": _cpu_model(), "versions": _versions(), "load_before": load_before, "started": started,
            "elapsed": time.perf_counter() - t0}
    text = render(results, peaks, shapes, command, meta)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peaks": peaks, "meta": meta, "results": results}, f, indent=1)
    _ = other_load  # re-exported for callers that want a quick probe
    return 0


if __name__ == "__main__":
    sys.exit(main())
