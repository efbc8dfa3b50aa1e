#!/usr/bin/env python3
"""Fuzz ``megq.load`` with mutated real files for a while and report what happened.

    python tools/fuzz_load.py --seconds 300            # or --cases 20000; --seed N; --keep DIR for crash files

Base files: a float, a QFloat and a Q model and a training checkpoint dict, saved by this megq. Each case applies 1-3
random mutations (truncation, bit flips, entry removal/duplication/renaming, manifest mutations, huge declared sizes;
the same ones the test suite's hypothesis test uses) and loads the result. A case passes if load raises
``megq.SerializationError`` or returns an object that re-saves and reloads to byte-identical files. Anything else (any
other exception, or an unfaithful load) is a crash: its file is kept and its traceback printed. The summary gives the
cases run, how many were refused / loaded / crashed, the slowest case and the process's peak RSS.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "serialization"))

import numpy as np  # noqa: E402
from megq_file_helpers import make_qfloat_and_q, make_small_net  # noqa: E402
from megq_file_mutations import MUTATIONS, RandomChooser  # noqa: E402

import megq  # noqa: E402
from megq import optimizer as optim  # noqa: E402


def base_files(directory: str) -> dict:
    qnet, qmodel = make_qfloat_and_q()
    net = make_small_net()
    opt = optim.Adam(list(net.parameters()), 1e-3)
    paths = {}
    for name, obj in [("float", make_small_net()), ("qfloat", qnet), ("q", qmodel),
                      ("ckpt", {"epoch": 3, "model": net.state_dict(), "optimizer": opt.state_dict(),
                                "history": [1.5, float("nan"), np.float32(2)], "tag": ("run", 7, None)})]:
        paths[name] = os.path.join(directory, name + ".megq")
        megq.save(obj, paths[name])
    out = {}
    for name, p in paths.items():
        with open(p, "rb") as f:
            out[name] = f.read()
    return out


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def run_case(data: bytes, path: str, scratch: str) -> str:
    with open(path, "wb") as f:
        f.write(data)
    try:
        obj = megq.load(path)
    except megq.SerializationError:
        return "refused"
    again1, again2 = os.path.join(scratch, "again1.megq"), os.path.join(scratch, "again2.megq")
    megq.save(obj, again1)
    megq.save(megq.load(again1), again2)
    if _read(again1) != _read(again2):
        raise AssertionError("unfaithful load: re-saving the loaded object does not reproduce the same file")
    return "loaded"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=None, help="run for this long (default 60 if --cases unset)")
    ap.add_argument("--cases", type=int, default=None, help="run this many cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default="fuzz-crashes", help="directory for crashing inputs")
    args = ap.parse_args(argv)
    if args.seconds is None and args.cases is None:
        args.seconds = 60.0
    rng = random.Random(args.seed)
    chooser = RandomChooser(rng)
    counts = {"refused": 0, "loaded": 0, "crashed": 0}
    skipped = 0
    per_mutation = {name: 0 for name in MUTATIONS}
    slowest = (0.0, "")
    scratch = tempfile.mkdtemp(prefix="megq-fuzz-")
    case = 0
    start = time.monotonic()
    try:
        bases = base_files(scratch)
        path = os.path.join(scratch, "case.megq")
        start = time.monotonic()
        while True:
            if args.cases is not None and case >= args.cases:
                break
            if args.seconds is not None and time.monotonic() - start >= args.seconds:
                break
            case += 1
            base = rng.choice(sorted(bases))
            data = bases[base]
            names = [rng.choice(sorted(MUTATIONS)) for _ in range(rng.randint(1, 3))]
            for name in names:
                try:
                    data = MUTATIONS[name](data, chooser) if data else data
                    per_mutation[name] += 1
                except Exception:  # a mutation that needs a valid zip, applied to an already broken one
                    skipped += 1
            t0 = time.monotonic()
            try:
                outcome = run_case(data, path, scratch)
            except KeyboardInterrupt:
                raise
            except BaseException:  # noqa: B902 - everything that is not SerializationError is a finding
                outcome = "crashed"
                os.makedirs(args.keep, exist_ok=True)
                keep = os.path.join(args.keep, f"crash-{args.seed}-{case}.megq")
                with open(keep, "wb") as f:
                    f.write(data)
                print(f"CRASH case {case} ({base} + {'+'.join(names)}), kept as {keep}:", file=sys.stderr)
                traceback.print_exc()
            elapsed = time.monotonic() - t0
            if elapsed > slowest[0]:
                slowest = (elapsed, f"case {case} ({base} + {'+'.join(names)}, {outcome})")
            counts[outcome] += 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    total = time.monotonic() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"cases run: {case} in {total:.0f} s (seed {args.seed})")
    print(f"refused (SerializationError): {counts['refused']}  loaded faithfully: {counts['loaded']}  "
          f"crashes: {counts['crashed']}")
    print(f"mutations applied: {', '.join(f'{k} {v}' for k, v in sorted(per_mutation.items()))}; "
          f"skipped on already broken input: {skipped}")
    print(f"slowest case: {slowest[0] * 1000:.1f} ms, {slowest[1]}; peak RSS of the run: {peak_mib:.0f} MiB")
    return 1 if counts["crashed"] else 0


if __name__ == "__main__":
    sys.exit(main())
