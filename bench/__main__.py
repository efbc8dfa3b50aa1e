"""``python -m bench <suite> [options]``: benchmark suites (``gemm``)."""
from __future__ import annotations

import sys

SUITES = {"gemm": "bench.gemm", "conv": "bench.conv"}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUITES:
        print("usage: python -m bench {" + ",".join(SUITES) + "} [options]   (python -m bench gemm --help)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib

    return importlib.import_module(SUITES[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
