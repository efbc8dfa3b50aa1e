"""Helpers shared by the serialization tests: small real models (float, QFloat, Q) and a writer of hand-made
files (imported by the tests; this folder is put on sys.path by its conftest)."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np

import megq
import megq.module as M
from megq.autodiff import no_grad


def make_small_net():
    return M.Sequential(M.QuantStub(), M.ConvBnRelu2d(1, 4, 3, padding=1), M.AdaptiveAvgPool2d(1), M.Flatten(),
                        M.Linear(4, 3), M.DequantStub())


def make_qfloat_and_q(seed=1):
    import megq.quantization as Q

    rng = np.random.default_rng(seed)
    qnet = Q.quantize_qat(make_small_net(), inplace=False, qconfig=Q.ema_fakequant_qconfig_per_channel_quint8)
    Q.disable_fake_quant(qnet)
    with no_grad():
        qnet(megq.Tensor(rng.standard_normal((4, 1, 6, 6)).astype(np.float32)))
    Q.enable_fake_quant(qnet)
    qmodel = Q.quantize(qnet.eval(), inplace=False).eval()
    return qnet, qmodel


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=arr.dtype.hasobject)
    return buf.getvalue()


def write_raw(path, manifest=None, arrays=None, raw_manifest=None, compression=zipfile.ZIP_STORED):
    """A zip file with the given manifest (dict, or raw bytes) and ``{name: ndarray or bytes}`` array entries."""
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        z.writestr("manifest.json", raw_manifest if raw_manifest is not None else json.dumps(manifest))
        for name, arr in (arrays or {}).items():
            z.writestr(name + ".npy", arr if isinstance(arr, bytes) else npy_bytes(arr))


def manifest_v2(root, nodes=(), arrays=None):
    return {"format": "megq-model", "version": 2, "root": root, "nodes": list(nodes), "arrays": arrays or {}}


def manifest_v1(root, nodes=()):
    return {"format": "megq-model", "version": 1, "root": root, "nodes": list(nodes)}
