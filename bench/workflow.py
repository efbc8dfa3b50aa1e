"""The quantization example end to end through megq's workflow commands, timed stage by stage.

``megq train`` (float) -> ``megq test`` -> ``megq calibrate`` (PTQ) -> ``megq test`` -> ``megq finetune`` (QAT) ->
``megq test``, run in-process through :mod:`megq.workflow` (the functions behind the commands) on Fashion-MNIST with
a ResNet-20 by default. Reports float, PTQ and QAT top-1 (QFloat and Q), each stage's wall time, the QFloat-vs-Q
eval time ratio (QFloat eval runs on megq's kernels) and, for comparison, the QFloat eval time on the numpy
reference backend over a slice of the test set. ``--presets`` adds a PTQ sweep over calibration presets on the same
float model (top-1, and the cosine between the Q and float logits).

Usage: python -m bench workflow [--arch resnet20] [--epochs 3] [--train-subset 20000] [--presets] [--write]
       python -m bench workflow --quick        (digits, ResNet-8, 1 epoch: seconds)
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from typing import Any, Dict, List

import numpy as np

import megq
import megq.kernels
import megq.quantization as Q
from megq import workflow as W
from megq.autodiff import no_grad

try:  # run as `python -m bench.workflow` or as a file
    from . import _results_md as R
except ImportError:  # pragma: no cover
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _results_md as R  # type: ignore

SWEEP = ["calibration_qconfig", "calibration_qconfig_per_channel", "calibration_qconfig_percentile_per_channel",
         "calibration_qconfig_kl_per_channel", "calibration_qconfig_mse_per_channel", "ema_fakequant_qconfig",
         "ema_fakequant_qconfig_per_channel", "ema_fakequant_qconfig_per_channel_quint8"]


def log(*a: Any) -> None:
    print(*a, flush=True)


def _val_batches(data: W.Data, meta: Dict[str, Any], n: int) -> np.ndarray:
    x = data.val.images[:n].astype(np.float32)
    return W._normalize(meta)(x, np.random.default_rng(0))


def _logits(model: Any, x: np.ndarray, batch: int = 256) -> np.ndarray:
    with no_grad():
        return np.concatenate([np.asarray(model.eval()(megq.Tensor(x[i:i + batch])).numpy())
                               for i in range(0, len(x), batch)])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.mean((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)))


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench workflow", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument("--train-subset", type=int, default=20000, help="training images (0: all)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--num-batches", type=int, default=20, help="calibration batches")
    ap.add_argument("--ptq", default=W.DEFAULT_PTQ_PRESET)
    ap.add_argument("--qat", default=W.DEFAULT_QAT_PRESET)
    ap.add_argument("--reference-images", type=int, default=500,
                    help="test images for the reference-backend QFloat timing (0: skip)")
    ap.add_argument("--presets", action="store_true", help="also sweep PTQ presets on the float model")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="digits, resnet8, 1 epoch (CI smoke)")
    ap.add_argument("--write", action="store_true", help="record the results in bench/RESULTS-quant.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.data, args.arch, args.epochs, args.qat_epochs, args.train_subset = "digits", "resnet8", 1, 1, 0
        args.num_batches, args.reference_images = 4, 64
    if args.threads:
        megq.set_num_threads(args.threads)
    subset = args.train_subset or None
    t_all = time.perf_counter()
    log(f"machine: {R.machine()}; megq threads {megq.kernels.get_num_threads()}; load average {R.loadavg()}")
    rows: Dict[str, Dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        f_ckpt, p_ckpt, q_ckpt = (os.path.join(tmp, n) for n in ("float.megq", "ptq.megq", "qat.megq"))
        t = time.perf_counter()
        W.train(args.data, f_ckpt, args.arch, args.epochs, args.lr, args.batch_size, seed=0, progress=False,
                train_subset=subset)
        rows["Float"] = {"stage_s": time.perf_counter() - t, **W.test(args.data, f_ckpt, progress=False)}
        t = time.perf_counter()
        W.calibrate(args.data, f_ckpt, p_ckpt, args.ptq, args.num_batches, args.batch_size, progress=False)
        rows["PTQ"] = {"stage_s": time.perf_counter() - t, **W.test(args.data, p_ckpt, progress=False)}
        t = time.perf_counter()
        W.finetune(args.data, f_ckpt, q_ckpt, args.qat_epochs, args.qat, batch_size=args.batch_size,
                   progress=False, train_subset=subset)
        rows["QAT"] = {"stage_s": time.perf_counter() - t, **W.test(args.data, q_ckpt, progress=False)}

        ckpt = megq.load(p_ckpt)
        data = W.load_data(args.data, ckpt["meta"]["image_size"][0])
        reference = None
        if args.reference_images:
            x = _val_batches(data, ckpt["meta"], args.reference_images)
            timings = {}
            for backend in ("kernels", "reference"):
                prev = Q.set_integer_eval_backend(backend)
                try:
                    _logits(ckpt["qfloat"], x[:8])
                    t = time.perf_counter()
                    timings[backend] = (_logits(ckpt["qfloat"], x), time.perf_counter() - t)
                finally:
                    Q.set_integer_eval_backend(prev)
            t = time.perf_counter()
            q_logits = _logits(ckpt["q"], x)
            q_s = time.perf_counter() - t
            same = np.array_equal(timings["kernels"][0], timings["reference"][0]) and \
                np.array_equal(q_logits, timings["kernels"][0])
            reference = dict(images=len(x), kernels_s=timings["kernels"][1], reference_s=timings["reference"][1],
                             q_s=q_s, identical=same)

        sweep = []
        if args.presets:
            float_model = megq.load(f_ckpt)["model"]
            x = _val_batches(data, ckpt["meta"], len(data.val))
            z_float = _logits(float_model, x)
            for name in SWEEP:
                out = os.path.join(tmp, f"{name}.megq")
                t = time.perf_counter()
                W.calibrate(args.data, f_ckpt, out, name, args.num_batches, args.batch_size, progress=False,
                            quiet=True)
                cal_s = time.perf_counter() - t
                z_q = _logits(megq.load(out)["q"], x)
                top1 = float((z_q.argmax(1) == data.val.labels).mean())
                sweep.append(dict(preset=name, top1=top1, cosine=_cosine(z_q, z_float), calibrate_s=cal_s))
                log(f"  sweep {name}: Q top-1 {top1:.4f}, logit cosine vs float {sweep[-1]['cosine']:.4f}")
    total = time.perf_counter() - t_all

    lines = ["| stage | command | stage time s | QFloat top-1 | Q top-1 | Q top-5 | Q = QFloat logits | "
             "QFloat / Q eval time |", "|---|---|---:|---:|---:|---:|---|---:|"]
    cmds = {"Float": f"train --arch {args.arch} --epochs {args.epochs}",
            "PTQ": f"calibrate --qconfig {args.ptq} --num-batches {args.num_batches}",
            "QAT": f"finetune --qconfig {args.qat} --epochs {args.qat_epochs}"}
    for name, r in rows.items():
        if name == "Float":
            lines.append(f"| Float | `{cmds[name]}` | {r['stage_s']:.0f} | – | {100 * r['top1']:.2f} % (float) | "
                         f"{100 * r['top5']:.2f} % | – | – |")
        else:
            lines.append(f"| {name} | `{cmds[name]}` | {r['stage_s']:.0f} | {100 * r['qfloat']['top1']:.2f} % | "
                         f"{100 * r['top1']:.2f} % | {100 * r['top5']:.2f} % | "
                         f"{'yes' if r['logits_identical'] else 'NO'} | {r['qfloat_q_time_ratio']:.2f}x |")
    table = "\n".join(lines)
    log("\n" + table)
    notes = [f"* eval of the {rows['Float']['images']} test images (batch 256): float "
             f"{rows['Float']['float']['seconds']:.1f} s; PTQ QFloat {rows['PTQ']['qfloat']['seconds']:.1f} s, Q "
             f"{rows['PTQ']['q']['seconds']:.1f} s; QAT QFloat {rows['QAT']['qfloat']['seconds']:.1f} s, Q "
             f"{rows['QAT']['q']['seconds']:.1f} s"]
    if reference:
        notes.append(f"* QFloat eval of {reference['images']} test images: kernels backend (default) "
                     f"{reference['kernels_s']:.2f} s, numpy reference backend {reference['reference_s']:.2f} s "
                     f"({reference['reference_s'] / reference['kernels_s']:.0f}x slower), Q model "
                     f"{reference['q_s']:.2f} s; logits identical across the three: "
                     f"{'yes' if reference['identical'] else 'NO'}")
    notes.append(f"* total {total / 60:.1f} min")
    log("\n".join(notes))
    sweep_md = ""
    if sweep:
        sweep_md = ("\n\nPTQ presets on the same float model (`megq calibrate --qconfig P`, "
                    f"{args.num_batches} batches of {args.batch_size}); cosine = mean cosine similarity between the "
                    "Q model's and the float model's logits over the test set:\n\n"
                    "| preset | Q top-1 | logit cosine vs float | calibrate s |\n|---|---:|---:|---:|\n" +
                    "\n".join(f"| `{s['preset']}` | {100 * s['top1']:.2f} % | {s['cosine']:.4f} | "
                              f"{s['calibrate_s']:.0f} |" for s in sweep))
    if args.write:
        data_desc = {"fashion-mnist": "Fashion-MNIST", "digits": "the embedded digits"}.get(args.data, args.data)
        command = " ".join(["python -m bench workflow"] + [shlex.quote(a) for a in
                                                            (sys.argv[1:] if argv is None else argv)])
        body = (f"Command: `{command}` (total wall time {total / 60:.1f} min; load average "
                f"at the end {R.loadavg()}).\nMachine: {R.machine()}; megq threads "
                f"{megq.kernels.get_num_threads()}.\n\n"
                f"The commands of docs/workflow.md on {data_desc} with megq.models.{args.arch}"
                f"{f', {subset} training images' if subset else ''}, default recipe (SGD nesterov, cosine, label "
                f"smoothing 0.1, random crop{', flip' if args.data != 'digits' else ''}); stage time includes the "
                f"checkpoint write; top-1 / top-5 on the whole test set.\n\n" + table + "\n\n" + "\n".join(notes)
                + sweep_md)
        R.update_section("Workflow", body)
        log(f"wrote {R.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
