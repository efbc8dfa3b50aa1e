"""``python -m bench smoke``: every benchmark suite once, in its quickest mode, each in its own process.

This checks that the bench code still runs against the current megq (CI runs it after the tests); its timings
mean nothing. A suite that fails makes the whole run fail, with the suite's output shown.
"""
from __future__ import annotations

import subprocess
import sys
import time
from typing import List, Sequence, Tuple

# (suite, arguments): the smallest run of each suite that still goes through all of its code paths.
SMOKE_RUNS: List[Tuple[str, List[str]]] = [
    ("gemm", ["--quick", "--threads", "1", "--shapes", "64x64x576", "1x1000x512", "--idle-timeout", "0"]),
    ("conv", ["--quick", "--threads", "1", "--set", "mobilenetv2"]),
    ("ops", ["--quick", "--threads", "1"]),
    ("training", ["--task", "digits", "--epochs", "1"]),
    ("quant_accuracy", ["--models", "digits", "--ptq", "calibration_qconfig", "--qat", "ema_fakequant_qconfig",
                        "--epochs", "1", "--qat-epochs", "0.1"]),
    # batch 2 takes the throughput path (and OpenVINO's THROUGHPUT contestant); the profile runs MobileNetV2 for its
    # depthwise layers and the ORT node matching of a deep module tree
    ("latency", ["--nets", "cifar_resnet18", "--threads", "1", "--batch", "1,2", "--rounds", "1", "--calls", "1",
                 "--warmup", "1"]),
    ("profile", ["--nets", "mobilenet_v2", "--threads", "1", "--rounds", "1", "--calls", "1", "--top", "3"]),
    ("plan", ["--nets", "cifar_resnet18", "--threads", "1", "--batch", "1,2", "--rounds", "1", "--calls", "1"]),
    ("interop", ["--quick"]),
    ("ptq", ["--quick", "--models", "mobilenet_v2,resnet8"]),
    ("workflow", ["--quick"]),
    ("torch_qat", ["--quick"]),
]


def main(argv: Sequence[str] | None = None) -> int:
    failed = []
    for suite, args in SMOKE_RUNS:
        cmd = [sys.executable, "-m", "bench", suite, *args]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        print(f"{suite:<16} {status:<20} {time.perf_counter() - t0:6.1f} s   {' '.join(cmd[2:])}", flush=True)
        if proc.returncode != 0:
            failed.append(suite)
            print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n", flush=True)
    print(f"{len(SMOKE_RUNS) - len(failed)} suites ran, {len(failed)} failed" + (f": {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
