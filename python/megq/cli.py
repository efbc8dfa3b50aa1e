"""``megq`` command line: ``megq demo`` (also ``python -m megq``), ``megq info``, and the quantization workflow
``megq train | calibrate | finetune | test | infer | compare`` (:mod:`megq.workflow`, docs/workflow.md)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="megq", description="MegEngine-style int8 quantization on CPU")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="train, quantize (PTQ and QAT), convert and compare on embedded digits")
    demo.add_argument("--epochs", type=int, default=8, help="float training epochs (default 8)")
    demo.add_argument("--qat-epochs", type=int, default=2, help="QAT fine-tuning epochs (default 2)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    sub.add_parser("info", help="CPU features, ISA paths and threads megq uses")
    _add_workflow_commands(sub)
    args = parser.parse_args(argv)
    if args.command in _WORKFLOW:
        return _run_workflow(args)
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


_WORKFLOW = ("train", "calibrate", "finetune", "test", "infer", "compare")


def _add_workflow_commands(sub: Any) -> None:
    from .workflow import DEFAULT_PTQ_PRESET, DEFAULT_QAT_PRESET

    data_help = "image-folder root with train/ and val/ (one sub-folder per class), or 'digits' or 'fashion-mnist'"

    def common(p: argparse.ArgumentParser, seed: bool = True) -> None:
        p.add_argument("--threads", type=int, default=None, help="threads for megq's kernels (default: all cores)")
        if seed:
            p.add_argument("--seed", type=int, default=0, help="seed of initialization, shuffling, augmentation")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        p.add_argument("--quiet", action="store_true", help="print only errors (and the --json line)")

    p = sub.add_parser("train", help="train a float model, saving a resumable checkpoint after every epoch")
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--arch", default="resnet8", help="a megq.models architecture (default resnet8)")
    p.add_argument("--epochs", type=int, default=10, help="total epochs (default 10)")
    p.add_argument("--out", required=True, help="checkpoint file to write (e.g. float.megq)")
    p.add_argument("--resume", default=None, help="continue an interrupted run from its checkpoint")
    p.add_argument("--lr", type=float, default=0.05, help="initial SGD learning rate, cosine decay (default 0.05)")
    p.add_argument("--batch-size", type=int, default=64, help="default 64")
    p.add_argument("--image-size", type=int, default=32, help="image folders: resize to this size (default 32)")
    p.add_argument("--grayscale", action="store_true", help="image folders: read images as one channel")
    p.add_argument("--train-subset", type=int, default=None, help="train on a fixed random subset of N images")
    common(p)

    p = sub.add_parser("calibrate", help="post-training quantization: calibrate a float checkpoint, write the "
                                         "quantized model")
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--checkpoint", required=True, help="float checkpoint from `megq train`")
    p.add_argument("--out", required=True, help="quantized checkpoint to write (e.g. q.megq)")
    p.add_argument("--qconfig", default=DEFAULT_PTQ_PRESET, help=f"preset (default {DEFAULT_PTQ_PRESET})")
    p.add_argument("--num-batches", type=int, default=20, help="calibration batches (default 20)")
    p.add_argument("--batch-size", type=int, default=64, help="default 64")
    p.add_argument("--option", action="append", default=[], metavar="NAME[=JSON]",
                   help="a post-training algorithm of megq.quantization.calibrate: ends_minmax, equalize, "
                        "equalize_activations, range_search, weight_rounding, bias_correction, e.g. --qconfig "
                        "calibration_qconfig_meanminmax_per_channel --option ends_minmax --option "
                        "'equalize_activations={\"linear\": true}' --option weight_rounding (value true unless "
                        "given as JSON); repeatable")
    p.add_argument("--skip", action="append", default=[], metavar="NAMES",
                   help="layers kept float (mixed precision), comma-separated module names; repeatable")
    common(p)

    p = sub.add_parser("finetune", help="quantization-aware training from a float checkpoint, write the quantized "
                                        "model")
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--checkpoint", required=True, help="float checkpoint from `megq train`")
    p.add_argument("--out", required=True, help="quantized checkpoint to write (e.g. q.megq)")
    p.add_argument("--epochs", type=int, default=1, help="QAT epochs (default 1)")
    p.add_argument("--qconfig", default=DEFAULT_QAT_PRESET, help=f"preset (default {DEFAULT_QAT_PRESET})")
    p.add_argument("--lr", type=float, default=0.005, help="initial learning rate (default 0.005)")
    p.add_argument("--batch-size", type=int, default=64, help="default 64")
    p.add_argument("--train-subset", type=int, default=None, help="fine-tune on a fixed random subset of N images")
    p.add_argument("--skip", action="append", default=[], metavar="NAMES",
                   help="layers kept float (mixed precision), comma-separated module names; repeatable")
    common(p)

    p = sub.add_parser("test", help="top-1/top-5 of a checkpoint's models (Float, QFloat, Q), agreement, latency")
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--checkpoint", required=True, help="checkpoint from train, calibrate or finetune")
    p.add_argument("--batch-size", type=int, default=256, help="default 256")
    p.add_argument("--json", action="store_true", help="end with one JSON line (top1, top5 as fractions, ...)")
    common(p, seed=False)

    p = sub.add_parser("compare", help="per-layer error of a quantized checkpoint against its float checkpoint "
                                       "(SQNR, cosine, max error; worst layer first)")
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--checkpoint", required=True, help="float checkpoint from `megq train`")
    p.add_argument("--quantized", required=True, help="quantized checkpoint from `megq calibrate` or `finetune`")
    p.add_argument("--num-batches", type=int, default=4, help="validation batches (default 4)")
    p.add_argument("--batch-size", type=int, default=64, help="default 64")
    p.add_argument("--plot", default=None, help="also write a PNG plot (needs matplotlib)")
    p.add_argument("--sensitivity", action="store_true",
                   help="also rank the activation quantizers by what each costs at the output (leaves one float "
                        "at a time: one more pass of the batches per quantizer)")
    p.add_argument("--json", action="store_true", help="end with one JSON line (the report)")
    common(p, seed=False)

    p = sub.add_parser("infer", help="classify image files (prints the top classes with probabilities)")
    p.add_argument("--checkpoint", required=True, help="checkpoint from train, calibrate or finetune")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--top", type=int, default=5, help="classes to print per image (default 5)")
    p.add_argument("--json", action="store_true", help="end with one JSON line")
    common(p, seed=False)


def _names(items: List[str]) -> List[str]:
    """``--skip a,b --skip c`` -> ``["a", "b", "c"]``."""
    return [n.strip() for item in items for n in item.split(",") if n.strip()]


def _run_workflow(args: argparse.Namespace) -> int:
    from . import workflow as W

    progress = not (args.no_progress or args.quiet)
    try:
        if args.threads is not None:
            if args.threads <= 0:
                raise W.WorkflowError(f"--threads must be a positive integer, got {args.threads}")
            from . import set_num_threads

            set_num_threads(args.threads)
        if args.command == "train":
            res = W.train(args.data, args.out, args.arch, args.epochs, args.lr, args.batch_size, args.resume,
                          args.seed, args.image_size, args.grayscale, progress, args.quiet, args.train_subset)
        elif args.command == "calibrate":
            res = W.calibrate(args.data, args.checkpoint, args.out, args.qconfig, args.num_batches, args.batch_size,
                              args.seed, progress, args.quiet, W.parse_options(args.option), _names(args.skip))
        elif args.command == "finetune":
            res = W.finetune(args.data, args.checkpoint, args.out, args.epochs, args.qconfig, args.lr,
                             args.batch_size, args.seed, progress, args.quiet, args.train_subset, _names(args.skip))
        elif args.command == "compare":
            res = W.compare(args.data, args.checkpoint, args.quantized, args.num_batches, args.batch_size,
                            args.plot, args.quiet, args.sensitivity)
        elif args.command == "test":
            res = W.test(args.data, args.checkpoint, args.batch_size, progress, args.quiet)
        else:
            res = W.infer(args.checkpoint, args.images, args.top, args.quiet)
    except W.WorkflowError as e:
        return W.main_error(e)
    if getattr(args, "json", False):
        print(W.json_line(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
