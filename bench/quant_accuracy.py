"""Quantization accuracy bar: Float vs PTQ (several calibration presets) vs QAT, QFloat and Q, on

  * digits: megq.demo's CNN on the embedded digits (1,437 train / 360 test, 8x8), trained as in the demo;
  * resnet8 / resnet20: CIFAR-style ResNets (megq.models, in_channels=1) on Fashion-MNIST (60,000 / 10,000),
    2 float epochs (SGD momentum 0.9 nesterov, lr 0.1 with 100 warm-up iterations then cosine, wd 5e-4,
    batch 128, random crop with padding 2 + horizontal flip).

PTQ: quantize_qat(float, calibration preset) -> observe ``--calib-batches`` training batches (no augmentation)
-> reset_qconfig(passive_qconfig) (freezes the calibrated scales, enables fake quant) -> eval -> quantize.
QAT: quantize_qat(float, ema preset) -> fine-tune ``--qat-epochs`` at lr ``--qat-lr`` cosine (same data
pipeline) -> eval -> quantize.

For every quantized model, on the WHOLE test set, batch by batch: QFloat (eval: megq's exact integer path) and
Q accuracy, the fraction of identical argmax predictions, identical logits, and whether every layer's int8 output
(each QuantizedTensor a sub-module returns, captured with forward hooks) is identical between QFloat and Q.

Bars: best PTQ Q accuracy >= Float - 1.0 point; best QAT Q accuracy >= Float - 0.3 point; 100 % identical
predictions and identical int8 layers everywhere.

Usage: python -m bench.quant_accuracy [--models digits,resnet8[,resnet20]] [--write] [--train-subset N] ...
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np

import megq  # noqa: E402
import megq.functional as F  # noqa: E402
import megq.kernels  # noqa: E402
import megq.module as M  # noqa: E402
import megq.quantization as Q  # noqa: E402
from megq import data as D  # noqa: E402
from megq import models  # noqa: E402
from megq import optimizer as optim  # noqa: E402
from megq.autodiff import GradManager, no_grad, tune_malloc  # noqa: E402
from megq.qtensor import QuantizedTensor  # noqa: E402

try:  # run as `python -m bench.quant_accuracy` or as a file
    from . import _results_md as R
except ImportError:  # pragma: no cover
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _results_md as R  # type: ignore

PTQ_PRESETS = ["calibration_qconfig", "calibration_qconfig_per_channel", "calibration_qconfig_percentile",
               "calibration_qconfig_percentile_per_channel", "calibration_qconfig_kl_per_channel",
               "calibration_qconfig_mse_per_channel"]
QAT_PRESETS = ["ema_fakequant_qconfig", "ema_fakequant_qconfig_per_channel"]


def log(*a) -> None:
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# tasks
class Task:
    def __init__(self, name: str, make, train_set, test_set, train_tf, eval_tf, epochs: int, lr: float,
                 batch: int, wd: float, warmup: int, label_smoothing: float, qat_epochs: float, qat_lr: float,
                 eval_batch: int, calib_batch: int) -> None:
        self.__dict__.update(locals())
        del self.__dict__["self"]


def make_task(name: str, args) -> Task:
    if name == "digits":
        from megq import demo

        norm = D.transforms.Normalize(4.88, 6.02)
        # megq.demo's recipe: 8 epochs, batch 32, SGD nesterov lr 0.05 cosine, label smoothing 0.05
        return Task("digits", demo.digits_cnn, D.digits(True), D.digits(False), norm, norm, epochs=8, lr=0.05,
                    batch=32, wd=1e-4, warmup=0, label_smoothing=0.05, qat_epochs=args.qat_epochs or 2,
                    qat_lr=args.qat_lr or 0.005, eval_batch=360, calib_batch=256)
    norm = D.transforms.Normalize(0.2860 * 255, 0.3530 * 255)
    aug = D.transforms.Compose([D.transforms.RandomCrop(28, padding=2), D.transforms.RandomHorizontalFlip(), norm])
    train, test = D.FashionMNIST(True), D.FashionMNIST(False)
    if args.train_subset:
        train = D.ArrayDataset(train.images[:args.train_subset], train.labels[:args.train_subset])
    if args.test_subset:
        test = D.ArrayDataset(test.images[:args.test_subset], test.labels[:args.test_subset])
    make = {"resnet8": models.resnet8, "resnet20": models.resnet20}[name]
    return Task(name, lambda: make(in_channels=1), train, test, aug, norm, epochs=args.epochs or 2, lr=0.1,
                batch=128, wd=5e-4, warmup=100, label_smoothing=0.0, qat_epochs=args.qat_epochs or 1,
                qat_lr=args.qat_lr or 0.01, eval_batch=500, calib_batch=128)


def train(net: M.Module, task: Task, epochs: float, lr: float, warmup: int, seed: int) -> float:
    """SGD (momentum 0.9, nesterov) with linear warm-up then cosine, per iteration; ``epochs`` may be fractional
    (the last epoch is cut). Returns the wall time."""
    t0 = time.perf_counter()
    loader = D.DataLoader(task.train_set, task.batch, shuffle=True, seed=seed, transform=task.train_tf)
    total = max(1, int(round(epochs * len(loader))))
    opt = optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=task.wd)
    warmup = min(warmup, total // 5)
    if warmup:
        sched = optim.LinearWarmup(opt, warmup, 0.1, after=optim.CosineAnnealingLR(opt, total - warmup))
    else:
        sched = optim.CosineAnnealingLR(opt, total)
    tune_malloc()
    gm = GradManager().attach(net.parameters())
    step, epoch = 0, 0
    while step < total:
        net.train()
        loader.epoch = epoch
        for x, y in loader:
            with gm:
                loss = F.cross_entropy(net(megq.Tensor(x)), megq.Tensor(y), label_smoothing=task.label_smoothing)
                gm.backward(loss)
            opt.step()
            opt.clear_grad()
            sched.step()
            step += 1
            if step % 100 == 0:
                log(f"    [{task.name}] step {step}/{total} loss {float(loss.numpy()):.3f} "
                    f"({time.perf_counter() - t0:.0f} s)")
            if step >= total:
                break
        epoch += 1
    net.eval()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------------------------
# evaluation
def test_batches(task: Task):
    return D.DataLoader(task.test_set, task.eval_batch, transform=task.eval_tf)


def run_with_layers(net: M.Module, x: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Logits and every QuantizedTensor a sub-module returns (call order)."""
    seen: List[np.ndarray] = []

    def hook(mod, inp, out):
        if isinstance(out, QuantizedTensor):
            seen.append(out.data.copy())

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    try:
        with no_grad():
            y = np.asarray(net(megq.Tensor(x)).numpy())
    finally:
        for h in handles:
            h.remove()
    return y, seen


def evaluate_float(net: M.Module, task: Task) -> float:
    correct = total = 0
    with no_grad():
        for x, y in test_batches(task):
            correct += int((np.asarray(net(megq.Tensor(x)).numpy()).argmax(1) == y).sum())
            total += len(y)
    return correct / total


def evaluate_pair(qfloat: M.Module, qmodel: M.Module, task: Task) -> Dict[str, float]:
    """QFloat vs Q on the whole test set, batch by batch (bounded memory)."""
    n = c_qf = c_q = agree = same_logits = 0
    layers_ok, n_layers = True, 0
    t_qf = t_q = 0.0
    for x, y in test_batches(task):
        t = time.perf_counter()
        lf, layers_f = run_with_layers(qfloat, x)
        t_qf += time.perf_counter() - t
        t = time.perf_counter()
        lq, layers_q = run_with_layers(qmodel, x)
        t_q += time.perf_counter() - t
        pf, pq = lf.argmax(1), lq.argmax(1)
        n += len(y)
        c_qf += int((pf == y).sum())
        c_q += int((pq == y).sum())
        agree += int((pf == pq).sum())
        same_logits += int(np.all(lf == lq, axis=1).sum())
        n_layers = len(layers_q)
        layers_ok &= len(layers_f) == len(layers_q) > 0 and all(
            a.shape == b.shape and np.array_equal(a, b) for a, b in zip(layers_f, layers_q))
    return {"qfloat_acc": c_qf / n, "q_acc": c_q / n, "agree": agree / n, "same_logits": same_logits / n,
            "int8_identical": bool(layers_ok), "int8_layers": n_layers, "qfloat_eval_s": t_qf, "q_eval_s": t_q,
            "n": n}


# ---------------------------------------------------------------------------------------------------------------
def ptq(net: M.Module, preset: str, task: Task, calib_batches: int) -> Tuple[M.Module, float]:
    t0 = time.perf_counter()
    qnet = Q.quantize_qat(net, inplace=False, qconfig=Q.PRESETS[preset])
    qnet.train()  # observers on (calibration presets have no fake quant)
    loader = D.DataLoader(task.train_set, task.calib_batch, shuffle=True, seed=123, transform=task.eval_tf)
    with no_grad():
        for i, (x, _) in enumerate(loader):
            if i >= calib_batches:
                break
            qnet(megq.Tensor(x))
    qnet = Q.reset_qconfig(qnet, Q.passive_qconfig)  # freeze the calibrated qparams, enable fake quant
    qnet.eval()
    return qnet, time.perf_counter() - t0


def qat(net: M.Module, preset: str, task: Task, seed: int) -> Tuple[M.Module, float]:
    qnet = Q.quantize_qat(net, inplace=False, qconfig=Q.PRESETS[preset])
    secs = train(qnet, task, task.qat_epochs, task.qat_lr, 0, seed + 1)
    qnet.eval()
    return qnet, secs


def run_task(name: str, args) -> Dict[str, object]:
    task = make_task(name, args)
    megq.random.seed(args.seed)
    t_task = time.perf_counter()
    log(f"[{name}] {len(task.train_set)} train / {len(task.test_set)} test images")
    net = task.make()
    train_s = train(net, task, task.epochs, task.lr, task.warmup, args.seed)
    t = time.perf_counter()
    float_acc = evaluate_float(net, task)
    float_eval_s = time.perf_counter() - t
    log(f"[{name}] Float: {100 * float_acc:.2f} % (train {train_s:.0f} s, eval {float_eval_s:.1f} s)")
    rows: List[Dict[str, object]] = []
    for kind, presets in (("PTQ", args.ptq), ("QAT", args.qat)):
        for preset in presets:
            if kind == "PTQ":
                qf, prep_s = ptq(net, preset, task, args.calib_batches)
            else:
                qf, prep_s = qat(net, preset, task, args.seed)
            t = time.perf_counter()
            qm = Q.quantize(qf, inplace=False).eval()
            conv_s = time.perf_counter() - t
            r = evaluate_pair(qf, qm, task)
            r.update(kind=kind, preset=preset, prep_s=prep_s, convert_s=conv_s)
            rows.append(r)
            log(f"[{name}] {kind} {preset}: QFloat {100 * r['qfloat_acc']:.2f} %, Q {100 * r['q_acc']:.2f} %, "
                f"agree {100 * r['agree']:.2f} %, int8 identical {r['int8_identical']} ({r['int8_layers']} "
                f"layers); {'calibrate' if kind == 'PTQ' else 'fine-tune'} {prep_s:.0f} s, eval QFloat "
                f"{r['qfloat_eval_s']:.1f} s / Q {r['q_eval_s']:.1f} s")
    return {"name": name, "task": task, "float_acc": float_acc, "train_s": train_s, "float_eval_s": float_eval_s,
            "rows": rows, "wall_s": time.perf_counter() - t_task}


def table(res: Dict[str, object]) -> Tuple[str, List[str]]:
    fa = res["float_acc"]
    lines = ["| model | preset | QFloat acc | Q acc | Q − Float | identical predictions | identical logits | "
             "int8 layers identical | calibrate / fine-tune s | eval s QFloat / Q |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
             f"| Float | – | – | {100 * fa:.2f} % | – | – | – | – | {res['train_s']:.0f} (train) | "
             f"{res['float_eval_s']:.1f} |"]
    verdicts = []
    for kind, bar in (("PTQ", 1.0), ("QAT", 0.3)):
        rows = [r for r in res["rows"] if r["kind"] == kind]
        if not rows:
            continue
        best = max(rows, key=lambda r: r["q_acc"])
        for r in rows:
            mark = " **(best)**" if r is best else ""
            lines.append(f"| {kind} | `{r['preset']}`{mark} | {100 * r['qfloat_acc']:.2f} % | "
                         f"{100 * r['q_acc']:.2f} % | {100 * (r['q_acc'] - fa):+.2f} | {100 * r['agree']:.2f} % | "
                         f"{100 * r['same_logits']:.2f} % | "
                         f"{'yes' if r['int8_identical'] else 'NO'} ({r['int8_layers']}) | {r['prep_s']:.0f} | "
                         f"{r['qfloat_eval_s']:.1f} / {r['q_eval_s']:.1f} |")
        gap = 100 * (best["q_acc"] - fa)
        verdicts.append(f"{kind} bar (best Q within {bar} point of Float): best `{best['preset']}` "
                        f"{gap:+.2f} point -> {'MET' if gap >= -bar else 'MISSED'}")
    exact = all(r["agree"] == 1.0 and r["int8_identical"] for r in res["rows"])
    verdicts.append(f"QFloat == Q (100 % identical predictions, every int8 layer identical, {res['rows'][0]['n']} "
                    f"test images, every preset): {'yes' if exact else 'NO'}")
    return "\n".join(lines), verdicts


def describe(task: Task, args) -> str:
    if task.name == "digits":
        recipe = ("megq.demo.digits_cnn; float: 8 epochs, batch 32, SGD nesterov lr 0.05 cosine, wd 1e-4, "
                  "label smoothing 0.05 (the demo's recipe)")
    else:
        recipe = (f"megq.models.{task.name}(in_channels=1); float: {task.epochs} epochs, batch 128, SGD momentum "
                  f"0.9 nesterov, lr 0.1 (100 warm-up iterations from 0.01) then cosine, wd 5e-4, random crop "
                  f"(padding 2) + flip")
    return (f"{recipe}; {len(task.train_set)} train / {len(task.test_set)} test images. PTQ: "
            f"{args.calib_batches} calibration batches of {task.calib_batch} training images. QAT: "
            f"{task.qat_epochs} epoch(s) at lr {task.qat_lr} cosine from the float weights.")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="digits,resnet8", help="comma list of digits, resnet8, resnet20")
    ap.add_argument("--ptq", default=",".join(PTQ_PRESETS), help="PTQ calibration presets (comma list)")
    ap.add_argument("--qat", default=",".join(QAT_PRESETS), help="QAT presets (comma list)")
    ap.add_argument("--epochs", type=int, default=0, help="float epochs of the Fashion-MNIST ResNets (2)")
    ap.add_argument("--qat-epochs", type=float, default=0, help="QAT epochs (digits 2, ResNets 1)")
    ap.add_argument("--qat-lr", type=float, default=0, help="QAT lr (digits 0.005, ResNets 0.01)")
    ap.add_argument("--calib-batches", type=int, default=8)
    ap.add_argument("--train-subset", type=int, default=0, help="Fashion-MNIST: first N training images")
    ap.add_argument("--test-subset", type=int, default=0, help="Fashion-MNIST: first N test images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="update the Accuracy section of bench/RESULTS-quant.md")
    args = ap.parse_args(argv)
    args.ptq = [p for p in args.ptq.split(",") if p]
    args.qat = [p for p in args.qat.split(",") if p]
    for p in args.ptq + args.qat:
        if p not in Q.PRESETS:
            ap.error(f"unknown preset {p!r}; choose from {sorted(Q.PRESETS)}")
    t0 = time.perf_counter()
    log(f"machine: {R.machine()}; megq threads {megq.kernels.get_num_threads()}; "
        f"load average {R.loadavg()}")
    subsections = {}
    for name in [m for m in args.models.split(",") if m]:
        res = run_task(name, args)
        tab, verdicts = table(res)
        log("")
        log(tab)
        for v in verdicts:
            log("  " + v)
        log("")
        title = {"digits": "digits CNN (embedded digits)", "resnet8": "ResNet-8 (Fashion-MNIST)",
                 "resnet20": "ResNet-20 (Fashion-MNIST)"}[name]
        subsections[title] = (describe(res["task"], args) + f" Wall time of this model: {res['wall_s'] / 60:.1f} "
                              f"min.\n\n" + tab + "\n\n" + "\n".join(f"* {v}" for v in verdicts))
    total = time.perf_counter() - t0
    log(f"total {total / 60:.1f} min; load average at the end {R.loadavg()}")
    if args.write:
        pre = (f"Command: `{R.command_line('bench.quant_accuracy')}` (total wall time {total / 60:.1f} min; "
               f"load average at the end {R.loadavg()}).\nMachine: {R.machine()}.\n\n"
               "Q acc is the deployed int8 model (megq kernels); QFloat is the fake-quant model in eval mode. "
               "Identical predictions / logits / int8 layers compare QFloat (eval) with Q on the whole test set, "
               "batch by batch; int8 layers counts the QuantizedTensor outputs compared per batch. Bars: best PTQ Q "
               "within 1.0 point of Float, best QAT Q within 0.3 point.")
        R.update_subsections("Accuracy", pre, subsections)
        log(f"wrote {R.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
