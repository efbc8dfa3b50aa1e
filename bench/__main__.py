"""``python -m bench <suite> [options]``: the benchmark suites (results in bench/RESULTS*.md)."""
from __future__ import annotations

import sys

SUITES = {
    "gemm": "bench.gemm",                    # int8 GEMM vs ORT / torch
    "conv": "bench.conv",                    # ResNet-18 and MobileNetV2 1x1 conv layers
    "ops": "bench.ops",                      # memory-bound ops (GB/s) and depthwise layers
    "training": "bench.bench_float_training",  # float training vs torch
    "quant_accuracy": "bench.quant_accuracy",  # Float / PTQ / QAT accuracy, QFloat vs Q
    "latency": "bench.latency",              # whole networks (ResNet-18, MobileNetV2) vs int8 peers
    "profile": "bench.profile",              # where megq's ResNet-18 Q model spends its time
    "plan": "bench.plan",                    # megq's execution plans: per-step profile, batch splits
    "interop": "bench.interop",              # pretrained MobileNetV2: torch -> megq -> PTQ -> ONNX Runtime
    "ptq": "bench.ptq",                      # PTQ algorithms x presets, per-layer error, skip
    "workflow": "bench.workflow",            # megq train / calibrate / finetune / test on Fashion-MNIST
    "torch_qat": "bench.torch_qat",          # QAT in PyTorch with megq's numerics (1 and 2 processes) -> megq, exact
    "smoke": "bench.smoke",                  # every suite once in its quickest mode (CI)
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUITES:
        print("usage: python -m bench {" + ",".join(SUITES) + "} [options]   (python -m bench gemm --help)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib

    return importlib.import_module(SUITES[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
