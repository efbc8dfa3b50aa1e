"""megq's main job, end to end on the embedded digits: train a float CNN, quantize it by
post-training calibration (PTQ) and by quantization-aware training (QAT), convert both to Q models
running megq's int8 kernels, and report accuracy, QFloat-vs-Q agreement, size and latency."""
from __future__ import annotations

import functools
import os
import tempfile
import time
from typing import Callable, Dict, List

import numpy as np

from . import data as D
from . import functional as F
from . import module as M
from . import optimizer as optim
from . import quantization as Q
from .autodiff import GradManager, no_grad, tune_malloc
from .qtensor import QuantizedTensor
from .random import seed as seed_everything
from .serialization import save
from .tensor import Tensor

_NORMALIZE = D.transforms.Normalize(4.88, 6.02)  # digits' pixel mean / std (values 0..16)


def digits_cnn() -> M.Module:
    """The demo's model: two fused conv+BN+ReLU stages, pooling, a fused linear head."""
    return M.Sequential(
        M.QuantStub(),
        M.ConvBnRelu2d(1, 32, 3, padding=1, bias=False),
        M.ConvBnRelu2d(32, 32, 3, padding=1, bias=False),
        M.MaxPool2d(2),
        M.ConvBnRelu2d(32, 64, 3, padding=1, bias=False),
        M.AdaptiveAvgPool2d(1),
        M.Flatten(),
        M.Linear(64, 10),
        M.DequantStub(),
    )


def _train(net: M.Module, loader: D.DataLoader, epochs: int, lr: float) -> None:
    opt = optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    sched = optim.CosineAnnealingLR(opt, epochs * len(loader))
    tune_malloc()  # the demo owns its process (see megq.autodiff.tune_malloc)
    gm = GradManager().attach(net.parameters())
    for _ in range(epochs):
        net.train()
        for x, y in loader:
            with gm:
                loss = F.cross_entropy(net(Tensor(x)), Tensor(y), label_smoothing=0.05)
                gm.backward(loss)
            opt.step()
            opt.clear_grad()
            sched.step()


def _logits(net: M.Module, x: np.ndarray) -> np.ndarray:
    with no_grad():
        return np.asarray(net(Tensor(x)).numpy())


def _int8_outputs(net: M.Module, x: np.ndarray) -> List[np.ndarray]:
    """int8 values of every quantized layer (QFloat's exact eval path or the Q model)."""
    seen: List[np.ndarray] = []
    handles = [m.register_forward_hook(lambda mod, i, out: seen.append(out.data.copy())
                                       if isinstance(out, QuantizedTensor) else None) for m in net.modules()]
    _logits(net, x)
    for h in handles:
        h.remove()
    return seen


def _latency_ms(fn: Callable[[], object], repeats: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def _size(model: M.Module) -> int:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.megq")
        save(model, path)
        return os.path.getsize(path)


def run(epochs: int = 8, qat_epochs: int = 2, seed: int = 0, verbose: bool = True) -> Dict[str, Dict[str, float]]:
    """Run the demo; returns the table's numbers (also printed when ``verbose``)."""
    log = print if verbose else (lambda *a, **k: None)
    t_start = time.perf_counter()
    seed_everything(seed)
    train_set, test_set = D.digits(True), D.digits(False)
    train = D.DataLoader(train_set, 32, shuffle=True, seed=seed, transform=_NORMALIZE)
    x_test, y_test = next(iter(D.DataLoader(test_set, len(test_set), transform=_NORMALIZE)))
    log(f"megq demo: sklearn digits (embedded), {len(train_set)} train / {len(test_set)} test images, 8x8")

    net = digits_cnn()
    t = time.perf_counter()
    _train(net, train, epochs, 0.05)
    net.eval()
    log(f"  trained the float CNN for {epochs} epochs in {time.perf_counter() - t:.1f} s")
    results: Dict[str, Dict[str, float]] = {}
    float_pred = _logits(net, x_test).argmax(1)
    results["Float"] = {"accuracy": float((float_pred == y_test).mean())}

    # PTQ: observers only (histogram calibration), then quantize.
    ptq = Q.quantize_qat(net, inplace=False, qconfig=Q.calibration_qconfig_per_channel)
    ptq.train()
    with no_grad():
        for x, _ in D.DataLoader(train_set, 256, transform=_NORMALIZE):
            ptq(Tensor(x))
    ptq = Q.reset_qconfig(ptq, Q.passive_qconfig)  # freeze the calibrated scales, enable fake quant
    ptq.eval()

    # QAT: start from the float weights, fine-tune with fake quant (EMA activation ranges).
    qat = Q.quantize_qat(net, inplace=False, qconfig=Q.ema_fakequant_qconfig_per_channel)
    t = time.perf_counter()
    _train(qat, train, qat_epochs, 0.005)
    qat.eval()
    log(f"  QAT fine-tuning for {qat_epochs} epochs took {time.perf_counter() - t:.1f} s")

    sizes = {"Float": _size(net)}
    for name, qfloat in (("PTQ", ptq), ("QAT", qat)):
        qmodel = Q.quantize(qfloat, inplace=False).eval()
        qf_logits, q_logits = _logits(qfloat, x_test), _logits(qmodel, x_test)
        qf_layers, q_layers = _int8_outputs(qfloat, x_test), _int8_outputs(qmodel, x_test)
        same_layers = len(qf_layers) == len(q_layers) and all(np.array_equal(a, b) for a, b in
                                                               zip(qf_layers, q_layers))
        results[f"{name} QFloat"] = {"accuracy": float((qf_logits.argmax(1) == y_test).mean())}
        results[f"{name} Q"] = {
            "accuracy": float((q_logits.argmax(1) == y_test).mean()),
            "prediction_agreement": float((qf_logits.argmax(1) == q_logits.argmax(1)).mean()),
            "int8_identical": float(same_layers),
        }
        sizes[f"{name} Q"] = _size(qmodel)
        if name == "QAT":
            one = x_test[:1]
            results["latency"] = {
                "float_batch1_ms": _latency_ms(functools.partial(_logits, net, one)),
                "q_batch1_ms": _latency_ms(functools.partial(_logits, qmodel, one)),
                "float_batch360_ms": _latency_ms(functools.partial(_logits, net, x_test), 5),
                "q_batch360_ms": _latency_ms(functools.partial(_logits, qmodel, x_test), 5),
            }
    results["size_bytes"] = {k: float(v) for k, v in sizes.items()}

    log("")
    log(f"{'model':<14}{'test accuracy':>15}{'QFloat vs Q predictions':>26}{'int8 layers identical':>24}")
    for key in ("Float", "PTQ QFloat", "PTQ Q", "QAT QFloat", "QAT Q"):
        r = results[key]
        agree = f"{100 * r['prediction_agreement']:.1f} %" if "prediction_agreement" in r else ""
        same = ("yes" if r["int8_identical"] else "NO") if "int8_identical" in r else ""
        log(f"{key:<14}{100 * r['accuracy']:>14.2f}%{agree:>26}{same:>24}")
    log("")
    log("model file size: " + ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in sizes.items()))
    lat = results["latency"]
    log(f"latency (float numpy forward vs int8 Q model): batch 1 {lat['float_batch1_ms']:.2f} ms vs "
        f"{lat['q_batch1_ms']:.2f} ms; batch {len(y_test)} {lat['float_batch360_ms']:.1f} ms vs "
        f"{lat['q_batch360_ms']:.1f} ms")
    log(f"total {time.perf_counter() - t_start:.1f} s")
    return results
