"""The quantization example as commands: ``megq train``, ``calibrate``, ``finetune``, ``test`` and ``infer``.

MegEngine's official quantization example (a ResNet trained in float, then fine-tuned with QAT or calibrated,
tested as Float / QFloat / Q and run on images) as a chain of checkpoints, each command reading the previous
one's file. See docs/workflow.md.

Checkpoint files are ``megq.save`` dicts::

    {"format": "megq-workflow", "kind": "float" | "quantized", "meta": {...},
     "model": float model, "epoch": n, "optimizer": ..., "scheduler": ...}          # train
    {"format": "megq-workflow", "kind": "quantized", "meta": {...},
     "qfloat": QFloat model (calibrated or fine-tuned), "q": Q model, "qconfig": preset}   # calibrate / finetune

``meta`` holds what inference needs: architecture, class names, input channels and size, normalization.
"""
from __future__ import annotations

import json
import os
import sys
import time
from copy import deepcopy
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import data as D
from . import functional as F
from . import models
from . import optimizer as optim
from . import quantization as Q
from .autodiff import GradManager, no_grad, tune_malloc
from .module.module import Module
from .quantization.calibrate import _Progress
from .random import seed as seed_everything
from .serialization import load, save
from .tensor import Tensor

__all__ = ["WorkflowError", "load_data", "train", "calibrate", "finetune", "test", "infer",
           "DEFAULT_PTQ_PRESET", "DEFAULT_QAT_PRESET"]

FORMAT = "megq-workflow"
#: Presets used when ``--qconfig`` is not given (see the preset guide in docs/quantization.md).
DEFAULT_PTQ_PRESET = "ema_fakequant_qconfig_per_channel_quint8"
DEFAULT_QAT_PRESET = "ema_fakequant_qconfig_per_channel_quint8"
_BUNDLED = ("digits", "fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


class WorkflowError(Exception):
    """A user-facing error of a workflow command (bad folder layout, checkpoint, image ...): the CLI prints the
    message and exits with status 2."""


def _log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, flush=True)


# -- data ----------------------------------------------------------------------------------------------------------

class Data:
    """Train and validation sets with their class names, image geometry and normalization."""

    def __init__(self, train: D.ArrayDataset, val: D.ArrayDataset, classes: List[str], source: str) -> None:
        self.train, self.val, self.classes, self.source = train, val, classes, source
        c, h, w = train.images.shape[1:]
        self.in_channels, self.image_size = int(c), (int(h), int(w))
        sample = train.images[::max(1, len(train.images) // 2000)].astype(np.float32)  # every class (folders sort)
        self.mean = [float(v) for v in sample.mean(axis=(0, 2, 3))]
        self.std = [max(float(v), 1e-3) for v in sample.std(axis=(0, 2, 3))]


def _read_folder(root: str, size: Tuple[int, int], mode: str, classes: Optional[List[str]] = None
                 ) -> Tuple[D.ArrayDataset, List[str]]:
    try:
        folder = D.ImageFolder(root, size=size, mode=mode)
    except (FileNotFoundError, ValueError) as e:
        raise WorkflowError(f"{e}; expected DIR/train/<class>/<image> and DIR/val/<class>/<image>") from None
    if classes is not None and folder.classes != classes:
        raise WorkflowError(f"the class folders of {root!r} ({', '.join(folder.classes)}) differ from train/ "
                            f"({', '.join(classes)})")
    images = np.empty((len(folder), 1 if mode == "L" else 3) + tuple(size), np.uint8)
    labels = np.empty(len(folder), np.int32)
    for i in range(len(folder)):
        try:
            images[i], labels[i] = folder[i]
        except ImportError:
            raise
        except Exception as e:  # Pillow raises several types for a broken file
            raise WorkflowError(f"cannot read image {folder.samples[i][0]!r}: {e}") from None
    return D.ArrayDataset(images, labels), folder.classes


def load_data(spec: str, image_size: int = 32, grayscale: bool = False, train_subset: Optional[int] = None
              ) -> Data:
    """``spec``: "digits", "fashion-mnist", or an image-folder root with ``train/`` and ``val/`` (one sub-folder per
    class). Folder images are decoded once, resized to ``image_size`` and kept in memory as uint8.
    ``train_subset``: keep a fixed random subset of that many training images (the validation set stays whole)."""
    data = _load_data(spec, image_size, grayscale)
    if train_subset is not None and train_subset < len(data.train):
        idx = np.sort(np.random.default_rng(0).permutation(len(data.train))[:train_subset])
        data.train = D.ArrayDataset(data.train.images[idx], data.train.labels[idx])
    return data


def _load_data(spec: str, image_size: int, grayscale: bool) -> Data:
    if spec == "digits":
        return Data(D.digits(True), D.digits(False), [str(i) for i in range(10)], spec)
    if spec == "fashion-mnist":
        try:
            return Data(D.FashionMNIST(True), D.FashionMNIST(False), list(FASHION_CLASSES), spec)
        except FileNotFoundError as e:
            raise WorkflowError(str(e)) from None
    if not os.path.isdir(spec):
        raise WorkflowError(f"--data {spec!r}: not a directory, nor 'digits' or 'fashion-mnist'")
    missing = [d for d in ("train", "val") if not os.path.isdir(os.path.join(spec, d))]
    if missing:
        raise WorkflowError(f"--data {spec!r}: no {' or '.join(d + '/' for d in missing)} folder; expected "
                            f"DIR/train/<class>/<image> and DIR/val/<class>/<image>")
    size = (int(image_size), int(image_size))
    mode = "L" if grayscale else "RGB"
    train, classes = _read_folder(os.path.join(spec, "train"), size, mode)
    val, _ = _read_folder(os.path.join(spec, "val"), size, mode, classes)
    return Data(train, val, classes, os.path.abspath(spec))


def _normalize(meta: Dict[str, Any]) -> D.transforms.Normalize:
    return D.transforms.Normalize(meta["mean"], meta["std"])


def _loader(dataset: D.ArrayDataset, meta: Dict[str, Any], batch_size: int, train: bool, seed: int
            ) -> D.DataLoader:
    steps: List[Any] = []
    if train:
        h = meta["image_size"][0]
        steps.append(D.transforms.RandomCrop(tuple(meta["image_size"]), padding=max(1, h // 8)))
        if meta.get("flip", False):
            steps.append(D.transforms.RandomHorizontalFlip())
    steps.append(_normalize(meta))
    return D.DataLoader(dataset, batch_size, shuffle=train, seed=seed, transform=D.transforms.Compose(steps))


# -- checkpoints ---------------------------------------------------------------------------------------------------

def _build(meta: Dict[str, Any]) -> Module:
    arch = meta["arch"]
    factory = getattr(models, arch, None)
    if arch.startswith("_") or not callable(factory) or isinstance(factory, type):
        names = ", ".join(n for n in models.__all__ if n[0].islower())
        raise WorkflowError(f"--arch {arch!r}: not a megq.models architecture (choose from {names})")
    return factory(num_classes=len(meta["classes"]), in_channels=meta["in_channels"])


def _load(path: str, want: Optional[str] = None) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise WorkflowError(f"checkpoint {path!r} does not exist")
    try:
        ckpt = load(path)
    except ValueError as e:
        raise WorkflowError(f"checkpoint {path!r} cannot be read: {e}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise WorkflowError(f"checkpoint {path!r} was not written by megq train/calibrate/finetune")
    if want is not None and ckpt.get("kind") != want:
        raise WorkflowError(f"checkpoint {path!r} holds a {ckpt.get('kind')} model; this command needs a {want} "
                            f"model (from `megq {'train' if want == 'float' else 'calibrate or finetune'}`)")
    return ckpt


def _check_data_matches(meta: Dict[str, Any], data: Data, path: str) -> None:
    if list(meta["classes"]) != data.classes or meta["in_channels"] != data.in_channels or \
            tuple(meta["image_size"]) != data.image_size:
        raise WorkflowError(f"checkpoint {path!r} does not match --data {data.source!r}: the model has "
                            f"{len(meta['classes'])} classes, {meta['in_channels']} channel(s), size "
                            f"{tuple(meta['image_size'])}; the data {len(data.classes)} classes, {data.in_channels}"
                            f" channel(s), size {data.image_size}")


def _save(obj: Dict[str, Any], path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise WorkflowError(f"--out {path!r}: folder {folder!r} does not exist")
    save(obj, path)


# -- evaluation ----------------------------------------------------------------------------------------------------

def _logits(model: Module, x: np.ndarray) -> np.ndarray:
    with no_grad():
        return np.asarray(model(Tensor(x)).numpy(), np.float32)


def _evaluate(model: Module, loader: D.DataLoader, desc: str, progress: bool) -> Dict[str, Any]:
    model.eval()
    logits, labels, seconds = [], [], 0.0
    bar = _Progress(len(loader), desc, progress)
    for x, y in loader:
        t = time.perf_counter()
        logits.append(_logits(model, x))
        seconds += time.perf_counter() - t
        labels.append(y)
        bar.update()
    bar.close()
    z, t = np.concatenate(logits), np.concatenate(labels)
    order = np.argsort(-z, axis=1, kind="stable")
    k5 = min(5, z.shape[1])
    return {"top1": float((order[:, 0] == t).mean()), "top5": float((order[:, :k5] == t[:, None]).any(1).mean()),
            "seconds": seconds, "ms_per_image": 1e3 * seconds / len(t), "predictions": order[:, 0], "logits": z}


# -- training ------------------------------------------------------------------------------------------------------

def _fit(model: Module, data: Data, meta: Dict[str, Any], epochs: int, lr: float, batch_size: int, seed: int,
         progress: bool, quiet: bool, start: int = 0, state: Optional[Dict[str, Any]] = None,
         on_epoch: Optional[Any] = None) -> None:
    loader = _loader(data.train, meta, batch_size, True, seed)
    val = _loader(data.val, meta, 256, False, seed)
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = optim.CosineAnnealingLR(opt, max(1, epochs * len(loader)))
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    tune_malloc()  # megq's command owns its process: let training reuse heap pages (megq.autodiff.tune_malloc)
    gm = GradManager().attach(model.parameters())
    for epoch in range(start, epochs):
        loader.epoch = epoch  # the shuffle and augmentation of epoch e depend only on (seed, e): resumable
        model.train()
        t0 = time.perf_counter()
        bar = _Progress(len(loader), f"epoch {epoch + 1}/{epochs}", progress)
        total, correct, count = 0.0, 0, 0
        for x, y in loader:
            with gm:
                logits = model(Tensor(x))
                loss = F.nn.cross_entropy(logits, Tensor(y), label_smooth=0.1)
                gm.backward(loss)
            opt.step()
            opt.clear_grad()
            sched.step()
            total += float(loss.item()) * len(y)
            correct += int((logits.numpy().argmax(1) == y).sum())
            count += len(y)
            bar.update()
        bar.close()
        acc = _evaluate(model, val, "validate", progress)["top1"]
        _log(f"epoch {epoch + 1}/{epochs}: loss {total / count:.4f}, train top-1 {correct / count:.4f}, "
             f"val top-1 {acc:.4f} ({time.perf_counter() - t0:.1f} s)", quiet)
        if on_epoch is not None:
            on_epoch(epoch + 1, opt, sched)


def train(data: str, out: str, arch: str = "resnet8", epochs: int = 10, lr: float = 0.05, batch_size: int = 64,
          resume: Optional[str] = None, seed: int = 0, image_size: int = 32, grayscale: bool = False,
          progress: bool = True, quiet: bool = False, train_subset: Optional[int] = None) -> Dict[str, Any]:
    """Train a float ``arch`` on ``data``, saving a checkpoint to ``out`` after every epoch (resumable)."""
    _positive(epochs=epochs, batch_size=batch_size, image_size=image_size)
    if not lr > 0:
        raise WorkflowError(f"--lr must be positive, got {lr}")
    seed_everything(seed)
    start, state = 0, None
    if resume is not None:  # the checkpoint's settings (size, channels, lr, batch size, seed) win over the flags
        ckpt = _load(resume, "float")
        meta = ckpt["meta"]
        image_size, grayscale = meta["image_size"][0], meta["in_channels"] == 1 and data not in _BUNDLED
        train_subset = meta.get("train_subset")
    ds = load_data(data, image_size, grayscale, train_subset)
    if resume is not None:
        _check_data_matches(meta, ds, resume)
        model, start = ckpt["model"], int(ckpt["epoch"])
        state = ckpt
        if start >= epochs:
            raise WorkflowError(f"--resume {resume!r} already finished {start} epochs; ask for more with --epochs")
        _log(f"resuming {meta['arch']} from epoch {start}", quiet)
    else:
        meta = {"arch": arch, "classes": ds.classes, "in_channels": ds.in_channels, "image_size": list(ds.image_size),
                "mean": ds.mean, "std": ds.std, "flip": data not in ("digits",), "data": ds.source, "seed": seed,
                "lr": lr, "batch_size": batch_size, "epochs": epochs, "train_subset": train_subset,
                # image files hold 0..255; the embedded digits 0..16: infer rescales files to the training range
                "file_pixel_scale": 16 / 255 if data == "digits" else 1.0}
        model = _build(meta)
    _log(f"train {meta['arch']} on {ds.source}: {len(ds.train)} train / {len(ds.val)} val images, "
         f"{len(ds.classes)} classes, {ds.in_channels}x{ds.image_size[0]}x{ds.image_size[1]}", quiet)

    def checkpoint(epoch: int, opt: optim.Optimizer, sched: Any) -> None:
        _save({"format": FORMAT, "kind": "float", "meta": meta, "model": model, "epoch": epoch,
               "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, out)

    t0 = time.perf_counter()
    _fit(model, ds, meta, epochs, float(meta["lr"]), int(meta["batch_size"]), int(meta["seed"]), progress, quiet,
         start, state, checkpoint)
    val = _evaluate(model, _loader(ds.val, meta, 256, False, seed), "test", progress)
    _log(f"saved {out}: float top-1 {val['top1']:.4f} ({time.perf_counter() - t0:.1f} s)", quiet)
    return {"top1": val["top1"], "top5": val["top5"], "seconds": time.perf_counter() - t0}


def _preset(name: str) -> Q.QConfig:
    if name not in Q.PRESETS:
        raise WorkflowError(f"--qconfig {name!r}: unknown preset (choose from {', '.join(sorted(Q.PRESETS))})")
    return Q.PRESETS[name]


def _write_quantized(qfloat: Module, ckpt: Dict[str, Any], qconfig: str, out: str, how: str) -> None:
    qfloat.eval()
    q = Q.quantize(qfloat, inplace=False).eval()
    _save({"format": FORMAT, "kind": "quantized", "meta": ckpt["meta"], "qfloat": qfloat, "q": q,
           "qconfig": qconfig, "how": how}, out)


def _quantize_qat(model: Module, qconfig: str, skip: Optional[Sequence[str]]) -> Module:
    """QAT copy of ``model``; ``skip`` names layers kept float (``quantize_qat(..., skip=...)``)."""
    try:
        return Q.quantize_qat(deepcopy(model), _preset(qconfig), skip=list(skip) if skip else None)
    except ValueError as e:
        if "skip" not in str(e):
            raise
        raise WorkflowError(f"--skip: {e}") from None


def compare(data: str, checkpoint: str, quantized: str, num_batches: int = 4, batch_size: int = 64,
            plot: Optional[str] = None, quiet: bool = False, sensitivity: bool = False) -> Dict[str, Any]:
    """Per-layer error of the quantized model of ``quantized`` against the float model of ``checkpoint`` on
    ``num_batches`` validation batches (:func:`megq.quantization.compare`): a table worst layer first, optionally
    a PNG plot. With ``sensitivity`` also what each activation quantizer costs at the output
    (:func:`megq.quantization.sensitivity` on the checkpoint's QFloat model: one more pass of the batches per
    quantizer). Returns the report as a dict (``"sensitivity"``: that report's dict)."""
    _positive(num_batches=num_batches, batch_size=batch_size)
    fl, qu = _load(checkpoint, "float"), _load(quantized, "quantized")
    meta = fl["meta"]
    ds = load_data(data, meta["image_size"][0], meta["in_channels"] == 1 and data not in _BUNDLED)
    _check_data_matches(meta, ds, checkpoint)
    _check_data_matches(qu["meta"], ds, quantized)
    report = Q.compare(fl["model"], qu["q"], _loader(ds.val, meta, batch_size, False, 0), num_batches=num_batches)
    _log(report.table(), quiet)
    if plot:
        try:
            report.plot(plot)
        except ImportError as e:
            raise WorkflowError(f"--plot: {e}") from None
        _log(f"plot saved to {plot}", quiet)
    result = report.to_dict()
    if sensitivity:
        sens = Q.sensitivity(fl["model"], qu["qfloat"], _loader(ds.val, meta, batch_size, False, 0),
                             num_batches=num_batches)
        _log("\nwhat each activation quantizer costs at the output (left float one at a time):\n" + sens.table(),
             quiet)
        result["sensitivity"] = sens.to_dict()
    return result


def parse_options(items: Sequence[str]) -> Dict[str, Any]:
    """``["equalize", "bias_correction={\"num_batches\": 4}"]`` -> ``{"equalize": True, "bias_correction": {...}}``:
    calibrate options from the command line (a value is JSON; no value means true)."""
    options: Dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not name:
            raise WorkflowError(f"--option {item!r}: expected NAME or NAME=JSON")
        try:
            options[name] = json.loads(value) if sep else True
        except json.JSONDecodeError as e:
            raise WorkflowError(f"--option {item!r}: the value is not JSON ({e})") from None
    return options


def calibrate(data: str, checkpoint: str, out: str, qconfig: str = DEFAULT_PTQ_PRESET, num_batches: int = 20,
              batch_size: int = 64, seed: int = 0, progress: bool = True, quiet: bool = False,
              options: Optional[Dict[str, Any]] = None, skip: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Post-training quantization: calibrate the float model of ``checkpoint`` on training images; ``options`` are
    forwarded to :func:`megq.quantization.calibrate` (its post-training algorithms)."""
    _positive(num_batches=num_batches, batch_size=batch_size)
    ckpt = _load(checkpoint, "float")
    meta = ckpt["meta"]
    ds = load_data(data, meta["image_size"][0], meta["in_channels"] == 1 and data not in _BUNDLED)
    _check_data_matches(meta, ds, checkpoint)
    t0 = time.perf_counter()
    qfloat = _quantize_qat(ckpt["model"], qconfig, skip)
    loader = D.DataLoader(ds.train, batch_size, shuffle=True, seed=seed, transform=_normalize(meta))
    try:
        Q.calibrate(qfloat, loader, num_batches=num_batches, progress=progress, **(options or {}))
    except ValueError as e:
        if "unknown option" not in str(e):
            raise
        raise WorkflowError(str(e)) from None
    _write_quantized(qfloat, ckpt, qconfig, out, "calibrate")
    seconds = time.perf_counter() - t0
    _log(f"calibrated with {qconfig} on {min(num_batches, len(loader))} batches of {batch_size} in {seconds:.1f} s; "
         f"saved {out}", quiet)
    return {"seconds": seconds}


def finetune(data: str, checkpoint: str, out: str, epochs: int = 1, qconfig: str = DEFAULT_QAT_PRESET,
             lr: float = 0.005, batch_size: int = 64, seed: int = 0, progress: bool = True, quiet: bool = False,
             train_subset: Optional[int] = None, skip: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Quantization-aware training: fine-tune the float model of ``checkpoint`` with fake quantization."""
    _positive(epochs=epochs, batch_size=batch_size)
    ckpt = _load(checkpoint, "float")
    meta = ckpt["meta"]
    ds = load_data(data, meta["image_size"][0], meta["in_channels"] == 1 and data not in _BUNDLED, train_subset)
    _check_data_matches(meta, ds, checkpoint)
    seed_everything(seed)
    t0 = time.perf_counter()
    qfloat = _quantize_qat(ckpt["model"], qconfig, skip)
    _fit(qfloat, ds, meta, epochs, lr, batch_size, seed, progress, quiet)
    _write_quantized(qfloat, ckpt, qconfig, out, "finetune")
    seconds = time.perf_counter() - t0
    _log(f"fine-tuned with {qconfig} for {epochs} epoch(s) in {seconds:.1f} s; saved {out}", quiet)
    return {"seconds": seconds}


def test(data: str, checkpoint: str, batch_size: int = 256, progress: bool = True, quiet: bool = False
         ) -> Dict[str, Any]:
    """Top-1 / top-5 of every model the checkpoint holds on the validation set, Q-vs-QFloat agreement, latency."""
    _positive(batch_size=batch_size)
    ckpt = _load(checkpoint)
    meta = ckpt["meta"]
    ds = load_data(data, meta["image_size"][0], meta["in_channels"] == 1 and data not in _BUNDLED)
    _check_data_matches(meta, ds, checkpoint)
    loader = _loader(ds.val, meta, batch_size, False, 0)
    stages = [("float", ckpt["model"])] if ckpt["kind"] == "float" else [("qfloat", ckpt["qfloat"]), ("q", ckpt["q"])]
    res: Dict[str, Any] = {"checkpoint": checkpoint, "kind": ckpt["kind"], "images": len(ds.val)}
    for name, model in stages:
        r = _evaluate(model, loader, name, progress)
        res[name] = {k: r[k] for k in ("top1", "top5", "seconds", "ms_per_image")}
        res[name]["_pred"], res[name]["_logits"] = r["predictions"], r["logits"]
        _log(f"{name:>6}: top-1 {r['top1']:.4f}  top-5 {r['top5']:.4f}  {r['ms_per_image']:.3f} ms/image "
             f"(batch {batch_size})", quiet)
    if "q" in res:
        res["agreement"] = float((res["q"]["_pred"] == res["qfloat"]["_pred"]).mean())
        res["logits_identical"] = bool(np.array_equal(res["q"]["_logits"], res["qfloat"]["_logits"]))
        res["qfloat_q_time_ratio"] = res["qfloat"]["seconds"] / max(res["q"]["seconds"], 1e-9)
        _log(f"Q vs QFloat: predictions agree on {100 * res['agreement']:.2f} % of images, logits "
             f"{'identical' if res['logits_identical'] else 'DIFFER'}; QFloat eval takes "
             f"{res['qfloat_q_time_ratio']:.2f}x the Q model's time", quiet)
    final = res["q"] if "q" in res else res["float"]
    res["top1"], res["top5"] = final["top1"], final["top5"]
    for name, _ in stages:
        del res[name]["_pred"], res[name]["_logits"]
    return res


def _read_image(path: str, meta: Dict[str, Any]) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise WorkflowError("reading images needs Pillow: pip install pillow") from None
    h, w = meta["image_size"]
    try:
        with Image.open(path) as im:
            im = im.convert("L" if meta["in_channels"] == 1 else "RGB").resize((w, h), Image.BILINEAR)
            arr = np.asarray(im, np.uint8)
    except FileNotFoundError:
        raise WorkflowError(f"image {path!r} does not exist") from None
    except Exception as e:  # Pillow raises several types for a broken or non-image file
        raise WorkflowError(f"cannot read image {path!r}: {e}") from None
    arr = (arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)).astype(np.float32)
    return arr * np.float32(meta.get("file_pixel_scale", 1.0))


def infer(checkpoint: str, images: Sequence[str], top: int = 5, quiet: bool = False) -> List[Dict[str, Any]]:
    """Classify image files with the checkpoint's deployed model (Q if present, else float)."""
    _positive(top=top)
    if not images:
        raise WorkflowError("give at least one image file")
    ckpt = _load(checkpoint)
    meta = ckpt["meta"]
    model = ckpt["q"] if ckpt["kind"] == "quantized" else ckpt["model"]
    batch = np.stack([_read_image(p, meta) for p in images])
    batch = _normalize(meta)(batch, np.random.default_rng(0))
    z = _logits(model.eval(), batch)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    out = []
    for path, probs in zip(images, p):
        order = np.argsort(-probs, kind="stable")[:min(top, len(probs))]
        ranked = [(meta["classes"][i], float(probs[i])) for i in order]
        out.append({"image": path, "top": ranked})
        _log(f"{path}: " + ", ".join(f"{name} {100 * prob:.1f} %" for name, prob in ranked), quiet)
    return out


def _positive(**values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise WorkflowError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")


def json_line(result: Any) -> str:
    """``result`` as one JSON line (numpy values converted)."""
    return json.dumps(result, default=lambda o: o.item() if hasattr(o, "item") else str(o))


def main_error(e: WorkflowError) -> int:
    print(f"megq: error: {e}", file=sys.stderr)
    return 2
