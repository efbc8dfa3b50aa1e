"""``calibrate``: post-training calibration of a QFloat model in one call.

The recipe it implements (MegEngine's official quantization example calibrates the same way: ``model.eval()``
then ``enable_observer(model)`` and inference over the calibration data)::

    qat_model = Q.quantize_qat(float_model, Q.calibration_qconfig_per_channel)   # or any preset
    Q.calibrate(qat_model, loader, num_batches=20)     # eval mode, observers on, fake quant off, then frozen
    accuracy_of(qat_model)                             # QFloat eval == what quantize() will run, bit for bit
    q_model = Q.quantize(qat_model)

Mode switches, and why:

* the model runs in eval mode: BatchNorm uses (and keeps) its running statistics, dropout is off, and the
  ConvBn modules observe the BN-folded weights the Q model will use. ``eval()`` disables observers (MegEngine),
  so they are enabled explicitly afterwards;
* fake quantization is off while observing, for every preset: each observer sees the float model's activations,
  so the ranges do not depend on the order of the batches through upstream quantization noise, and EMA presets
  calibrate like the calibration presets;
* afterwards every observer is frozen. Modules whose qconfig has fake quants (EMA, min-max presets) get their
  observers disabled and fake quants enabled; modules of a calibration preset (observers only, no fake quant)
  get a :class:`~megq.quantization.PassiveObserver` holding the calibrated qparams and a ``FakeQuantize`` of the
  same dtype (what ``reset_qconfig(model, passive_qconfig)`` does, with each module's own dtypes, so quint8 and
  per-channel presets work too). Then the QFloat model's eval output is what ``quantize()`` produces.

``model.train()`` re-enables the observers of the EMA presets (QAT continues from the calibrated ranges).
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import numpy as np

from ..autodiff import no_grad
from ..module import qat
from ..module.module import Module
from ..tensor import Tensor
from .fake_quant import FakeQuantize
from .observer import PassiveObserver
from .quantize import _name_quant_children, disable_fake_quant, enable_observer

__all__ = ["calibrate", "PTQ_OPTIONS", "freeze_calibration"]

#: Post-training algorithms selectable as keyword options of :func:`calibrate`, ``{name: (phase, function)}``.
#: ``phase`` is "before" (run before the observers see data, e.g. cross-layer equalization that rescales weights)
#: or "after" (run on the frozen QFloat model, e.g. bias correction); ``function(qat_model, batches, value)``
#: receives the calibration batches as a list of float32 arrays and the option's value. The algorithms live in
#: ``megq.quantization.ptq`` and register themselves here.
PTQ_OPTIONS: Dict[str, tuple] = {}
#: Order in which the "after" options run (lower first), ``{name: rank}``.
PTQ_ORDER: Dict[str, int] = {}


def _input_array(batch: Any, index: int) -> np.ndarray:
    """The model input of one calibration batch: an array / Tensor, or the first item of an (input, label) pair."""
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError(f"batches: batch {index} is an empty sequence")
        batch = batch[0]
    if isinstance(batch, Tensor):
        batch = batch.numpy()
    if not isinstance(batch, np.ndarray):
        raise TypeError(f"batches: batch {index} is a {type(batch).__name__}; expected a numpy array, a Tensor or an "
                        f"(input, label) pair")
    if batch.dtype.kind not in "fiu":
        raise TypeError(f"batches: batch {index} has dtype {batch.dtype}; expected numbers")
    return np.asarray(batch, np.float32)


class _Progress:
    """tqdm when installed; otherwise a plain line about every 10 % (and at the end) on stderr."""

    def __init__(self, total: Optional[int], desc: str, enabled: bool) -> None:
        self.total, self.desc, self.enabled, self.count = total, desc, enabled, 0
        self.start = time.perf_counter()
        self._bar = None
        self._next = 1
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        self.count += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        if self.total:
            step = max(1, self.total // 10)
            if self.count >= self._next * step or self.count == self.total:
                self._next = self.count // step + 1
                print(f"{self.desc}: {self.count}/{self.total} ({time.perf_counter() - self.start:.1f} s)",
                      file=sys.stderr, flush=True)
        elif self.count % 10 == 0:
            print(f"{self.desc}: {self.count} ({time.perf_counter() - self.start:.1f} s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def freeze_calibration(qat_model: Module) -> Module:
    """Freeze every QAT module's observed qparams and enable fake quantization (see the module docstring).

    Modules with fake quants keep their observers, disabled; modules without (calibration presets) get a
    PassiveObserver holding the qparams and a FakeQuantize of the same dtype. Raises ValueError naming the module
    if one has no qparams (it never saw data)."""
    for path, m in qat_model.named_modules():
        if not isinstance(m, qat.QATModule):
            continue
        for which, present in (("weight", m.with_weight), ("act", m.with_act)):
            if not present:
                continue
            observer = getattr(m, f"{which}_observer")
            fake_quant = getattr(m, f"{which}_fake_quant")
            if observer is None:  # TQT / LSQ: the fake quant learns its own scale
                if fake_quant is not None:
                    fake_quant.enable()
                continue
            if fake_quant is not None:
                observer.disable()
                fake_quant.enable()
                continue
            qp = m.get_weight_qparams() if which == "weight" else m.get_activation_qparams()
            if qp is None or getattr(qp, "scale", None) is None:
                raise ValueError(f"calibrate: '{path or '<root>'}' ({type(m).__name__}) has no {which} qparams; did "
                                 f"the calibration data reach it?")
            passive = PassiveObserver(dtype=qp.dtype_meta or observer.dtype)
            passive.set_qparams(qp)
            setattr(m, f"{which}_observer", passive)
            setattr(m, f"{which}_fake_quant", FakeQuantize(dtype=passive.dtype))
    _name_quant_children(qat_model)
    return qat_model


def _batches(batches: Iterable[Any], num_batches: Optional[int]) -> Iterator[np.ndarray]:
    for i, batch in enumerate(batches):
        if num_batches is not None and i >= num_batches:
            return
        yield _input_array(batch, i)


def calibrate(qat_model: Module, batches: Iterable[Any], num_batches: Optional[int] = None, *,
              progress: bool = True, **options: Any) -> Module:
    """Calibrate a QFloat model (from :func:`quantize_qat`) on ``batches`` and freeze it (in place; returned).

    Args:
        qat_model: a model with QAT modules, any preset.
        batches: an iterable of float inputs (numpy arrays or Tensors) or of (input, label) pairs, e.g. a
            :class:`megq.data.DataLoader`.
        num_batches: use at most this many batches (None: all).
        progress: show a progress bar (tqdm when installed, else a plain line about every 10 %).
        options: post-training algorithms, forwarded to the functions registered in :data:`PTQ_OPTIONS` (the
            algorithms of ``megq.quantization.ptq``). An unknown name raises ValueError.

    After the call the model is in eval mode with observers frozen and fake quant enabled, so its eval output
    equals the Q model's (``quantize(qat_model)``) bit for bit. Raises TypeError for a model without QAT modules
    or a malformed batch, ValueError for an empty calibration set, a bad ``num_batches`` or an unknown option.
    """
    if not isinstance(qat_model, Module):
        raise TypeError(f"qat_model: expected a megq Module, got {type(qat_model).__name__}")
    if not any(isinstance(m, qat.QATModule) for m in qat_model.modules()):
        raise TypeError("qat_model: has no QAT modules; convert the float model with quantize_qat(model, qconfig) "
                        "first")
    if num_batches is not None and (isinstance(num_batches, bool) or not isinstance(num_batches, int)
                                    or num_batches <= 0):
        raise ValueError(f"num_batches: expected a positive int or None, got {num_batches!r}")
    if isinstance(batches, (np.ndarray, Tensor)):
        batches = [batches]
    unknown = sorted(set(options) - set(PTQ_OPTIONS))
    if unknown:
        known = ", ".join(sorted(PTQ_OPTIONS)) or "none yet"
        raise ValueError(f"calibrate: unknown option(s) {', '.join(unknown)} (known: {known})")
    chosen: List[tuple] = [(name, PTQ_OPTIONS[name], value) for name, value in options.items()]

    total = num_batches
    if total is None and hasattr(batches, "__len__"):
        total = len(batches)  # type: ignore[arg-type]
    elif total is not None and hasattr(batches, "__len__"):
        total = min(total, len(batches))  # type: ignore[arg-type]
    source: Iterable[np.ndarray] = _batches(batches, num_batches)
    if chosen:  # the algorithms see the batches again: keep them
        source = list(source)

    chosen.sort(key=lambda c: PTQ_ORDER.get(c[0], 0))  # each phase in its registered order (see PTQ_ORDER)
    for _name, (phase, fn), value in chosen:
        if phase == "before":
            fn(qat_model, source, value)

    qat_model.eval()
    enable_observer(qat_model)
    disable_fake_quant(qat_model)
    bar = _Progress(total, "calibrate", progress)
    seen = 0
    try:
        with no_grad():
            for x in source:
                qat_model(Tensor(x))
                seen += 1
                bar.update()
    finally:
        bar.close()
    if seen == 0:
        raise ValueError("batches: the calibration set is empty")
    freeze_calibration(qat_model)
    qat_model.eval()

    # "after" algorithms in their registered order too (weights rounded before biases are corrected)
    for _name, (phase, fn), value in chosen:
        if phase == "after":
            fn(qat_model, source, value)
    return qat_model


def _check_phase(phase: str) -> None:  # used by the registrations in megq.quantization.ptq
    if phase not in ("before", "after"):
        raise ValueError(f"phase: expected 'before' or 'after', got {phase!r}")


def register_ptq_option(name: str, phase: str, fn: Callable[[Module, List[np.ndarray], Any], None],
                        order: int = 0) -> None:
    """Make ``calibrate(..., name=value)`` call ``fn(qat_model, batches, value)`` in ``phase``; options of the same
    phase run by increasing ``order``."""
    _check_phase(phase)
    PTQ_OPTIONS[name] = (phase, fn)
    PTQ_ORDER[name] = int(order)
