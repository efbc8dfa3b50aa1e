"""The NNCF anchor of ``python -m bench ptq``: OpenVINO NNCF's post-training quantization (``nncf.quantize``) of the
same pretrained float MobileNetV2, calibrated on the same views and scored on the same photos with the same metric
(mean logit cosine against megq's float model, top-1 agreement).

The float model is the torchvision-layout torch twin of ``tests/interop/tv_models.py`` loaded with the same
checkpoint, exported to ONNX (opset 17). Backends: "onnx" (NNCF's ONNX backend; the quantized QDQ model runs in
ONNX Runtime) and "openvino" (the ONNX file read by OpenVINO, quantized by NNCF's OpenVINO backend, compiled for
the CPU). Variants: NNCF's defaults (``preset=PERFORMANCE``: symmetric int8 activations, per-channel symmetric
int8 weights, fast bias correction) and the same with full bias correction (``fast_bias_correction=False``).

Optional: needs ``pip install nncf`` (and onnxruntime / openvino for the backend); without it
:func:`nncf_rows` returns no rows and says why.
"""
from __future__ import annotations

import os
import tempfile
import time
import warnings
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

VARIANTS = {"defaults": {}, "full bias correction": {"fast_bias_correction": False}}


def _export_float(ckpt: str, x: np.ndarray, path: str) -> None:
    import torch
    from interop import tv_models

    ref = tv_models.mobilenet_v2()
    ref.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    ref.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(ref, (torch.from_numpy(x[:1]),), path, input_names=["input"], output_names=["output"],
                          opset_version=17, dynamo=False, dynamic_axes={"input": {0: "n"}, "output": {0: "n"}})


def _runner(backend: str, model) -> Callable[[np.ndarray], np.ndarray]:
    if backend == "onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return lambda a: sess.run(None, {"input": a})[0]
    import openvino as ov

    # f32: the CPU plugin otherwise runs float layers in bf16 where the CPU has it (AVX512-BF16, AMX)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 2, "INFERENCE_PRECISION_HINT": "f32"})
    return lambda a: compiled(a)[0]


def nncf_rows(ckpt: str, x: np.ndarray, calib: Sequence[np.ndarray], y_float: np.ndarray,
              backends: Sequence[str] = ("openvino", "onnx"), log: Callable[..., None] = print
              ) -> List[Tuple[str, str, float, int, float]]:
    """(backend, variant, mean cosine, top-1 agreements, seconds) for each backend x variant; [] without nncf."""
    try:
        import nncf
    except ImportError:
        log("NNCF anchor: needs pip install nncf; skipped")
        return []
    import onnx

    cosine = lambda a, b: (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))  # noqa: E731
    tmp = tempfile.mkdtemp(prefix="megq-nncf-")
    f_path = os.path.join(tmp, "float.onnx")
    _export_float(ckpt, x, f_path)
    samples = [np.ascontiguousarray(c[i:i + 1]) for c in calib for i in range(len(c))]  # one view per sample
    rows = []
    top = y_float.argmax(1)
    for backend in backends:
        if backend == "onnx":
            model = onnx.load(f_path)
        elif backend == "openvino":
            try:
                import openvino as ov
            except ImportError:
                log("NNCF anchor: openvino not installed; its backend skipped")
                continue
            model = ov.Core().read_model(f_path)
        else:
            raise ValueError(f"backends: unknown {backend!r} (onnx, openvino)")
        y = np.concatenate([_runner(backend, model)(x[i:i + 1]) for i in range(len(x))]).astype(np.float64)
        log(f"NNCF anchor: {backend} float vs megq float cosine {cosine(y, y_float).mean():.6f}")
        for vname, kw in VARIANTS.items():
            t0 = time.perf_counter()
            feed = (lambda a: {"input": a}) if backend == "onnx" else None  # ORT takes a feed dict
            qmodel = nncf.quantize(model, nncf.Dataset(samples, feed), subset_size=len(samples), **kw)
            secs = time.perf_counter() - t0
            run = _runner(backend, qmodel)
            yq = np.concatenate([run(x[i:i + 1]) for i in range(len(x))]).astype(np.float64)
            c = float(cosine(yq, y_float.astype(np.float64)).mean())
            rows.append((backend, vname, c, int((yq.argmax(1) == top).sum()), secs))
            log(f"NNCF {nncf.__version__} {backend} {vname}: cosine {c:.4f}, top-1 {rows[-1][3]}/{len(x)}, "
                f"{secs:.0f} s")
    return rows


def table(rows: Sequence[Tuple[str, str, float, int, float]], n: int, version: Optional[str] = None) -> List[str]:
    """Markdown rows of :func:`nncf_rows`' result."""
    if not rows:
        return []
    out = [f"\nNNCF {version or ''} (`nncf.quantize`, same float weights, same calibration views and photos):\n",
           "| NNCF backend | variant | mean logit cosine | top-1 = float | quantize (s) |", "|---|---|---|---|---|"]
    out += [f"| {b} | {v} | {c:.4f} | {t}/{n} | {s:.0f} |" for b, v, c, t, s in rows]
    return out
