"""``megq`` command line: ``megq demo`` (also ``python -m megq``) and ``megq info``."""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="megq", description="MegEngine-style int8 quantization on CPU")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="train, quantize (PTQ and QAT), convert and compare on embedded digits")
    demo.add_argument("--epochs", type=int, default=8, help="float training epochs (default 8)")
    demo.add_argument("--qat-epochs", type=int, default=2, help="QAT fine-tuning epochs (default 2)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    sub.add_parser("info", help="CPU features, ISA paths and threads megq uses")
    args = parser.parse_args(argv)
    if args.command in (None, "demo"):
        from .demo import run

        kwargs = {} if args.command is None else dict(epochs=args.epochs, qat_epochs=args.qat_epochs,
                                                      seed=args.seed)
        results = run(verbose=not getattr(args, "json", False), **kwargs)
        if getattr(args, "json", False):
            print(json.dumps(results, indent=2))
        return 0
    from . import kernels

    print(json.dumps({**kernels.cpu_info(), "threads": kernels.get_num_threads()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
