"""``sensitivity``: which quantizer costs the model output the most, found by leaving one quantizer float at a time.

:func:`compare` measures each layer's own error (SQNR of its output); a layer with poor SQNR may still matter little
to the network's output, and a layer with good SQNR may matter a lot (an early, high-resolution activation whose
rounding noise every later layer amplifies). This answers the other question, what each quantizer costs at the
output: for a calibrated QFloat model, every activation quantizer (each QAT module's output fake quant, including
the input ``QuantStub``) is switched off in turn, the model is run on the batches, and its output is scored
against the float model's. The gain of a row is its score minus the fully quantized score. Two more rows switch
off all weight quantizers at once and all activation quantizers at once: how the loss splits between weights and
activations.

Scores over all batches: the mean over samples of the cosine similarity of a sample's flattened output with the
float one (the logit cosine for a classifier), and the output SQNR ``10 log10(sum f^2 / sum (q - f)^2)`` in dB.
The runs use the fake-quant float path (a switched-off quantizer has no integer kernel); with every quantizer on it
computes the exact eval's values up to float rounding, so the baseline row is the QFloat model's score.

Cost: one forward pass of the batches per activation quantizer, plus three. When every single gain is small they
add up to the whole loss (MobileNetV2 with its most accurate recipe: the 64 gains sum to 0.0044, 1 - cosine is
0.0044), so the ranking says where to spend effort (ranges, equalization, ``skip``). A gain can be negative: a
quantizer whose clipping happens to help downstream. The report's note gives both sums.
"""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from ..autodiff import no_grad
from ..module import qat
from ..module.module import Module
from ..tensor import Tensor
from .integer_eval import integer_eval

__all__ = ["sensitivity", "SensitivityReport", "QuantizerGain"]


@dataclass
class QuantizerGain:
    """One row: the output's score with ``name``'s quantizer(s) off, and the gain over the quantized model."""

    name: str
    kind: str
    cosine: float
    sqnr_db: float
    cosine_gain: float
    sqnr_gain_db: float


@dataclass
class SensitivityReport:
    """Rows worst quantizer first (largest cosine gain), plus the baseline and the weights / activations split."""

    quantizers: List[QuantizerGain]
    baseline: QuantizerGain
    weights_float: QuantizerGain
    activations_float: QuantizerGain
    num_batches: int
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        def clean(d: Dict[str, Any]) -> Dict[str, Any]:  # JSON has no inf: +-1e308 keeps the order
            return {k: (math.copysign(1e308, v) if isinstance(v, float) and math.isinf(v) else v)
                    for k, v in d.items()}
        return {"num_batches": self.num_batches, "baseline": clean(asdict(self.baseline)),
                "weights_float": clean(asdict(self.weights_float)),
                "activations_float": clean(asdict(self.activations_float)),
                "quantizers": [clean(asdict(r)) for r in self.quantizers], "notes": list(self.notes)}

    def to_json(self, indent: Optional[int] = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self, limit: Optional[int] = None) -> str:
        """Markdown table: the ``limit`` most costly quantizers, then the baseline and split rows."""
        head = ("| quantizer off | kind | output cosine | gain | output SQNR dB | gain dB |\n"
                "|---|---|---|---|---|---|")

        def row(r: QuantizerGain) -> str:
            return (f"| {r.name} | {r.kind} | {r.cosine:.5f} | {r.cosine_gain:+.5f} | {r.sqnr_db:.1f} | "
                    f"{r.sqnr_gain_db:+.1f} |")
        rows = self.quantizers if limit is None else self.quantizers[:limit]
        lines = [head] + [row(r) for r in rows]
        lines += [row(self.weights_float), row(self.activations_float), row(self.baseline)]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def __str__(self) -> str:
        return self.table()


class _Score:
    """Running sums of the per-sample cosine and of the SQNR terms."""

    def __init__(self) -> None:
        self.cos_sum = 0.0
        self.samples = 0
        self.ff = self.ee = 0.0

    def add(self, f: np.ndarray, q: np.ndarray) -> None:
        f = f.reshape(f.shape[0], -1).astype(np.float64)
        q = q.reshape(q.shape[0], -1).astype(np.float64)
        dot = (f * q).sum(1)
        den = np.sqrt((f * f).sum(1) * (q * q).sum(1))
        # two all-zero samples are identical (cosine 1); one zero against a non-zero one is orthogonal (0)
        same = (den == 0) & np.all(f == q, axis=1)
        self.cos_sum += float(np.where(den > 0, dot / np.where(den > 0, den, 1.0), np.where(same, 1.0, 0.0)).sum())
        self.samples += f.shape[0]
        self.ff += float((f * f).sum())
        self.ee += float(((q - f) ** 2).sum())

    def result(self) -> Tuple[float, float]:
        sqnr = math.inf if self.ee == 0 else (-math.inf if self.ff == 0 else 10.0 * math.log10(self.ff / self.ee))
        return self.cos_sum / max(self.samples, 1), sqnr


def _array(y: Any) -> np.ndarray:
    if isinstance(y, Tensor):
        return np.asarray(y.numpy(), np.float64)
    if isinstance(y, np.ndarray):
        return y.astype(np.float64)
    raise TypeError(f"sensitivity: the models must return a Tensor, got {type(y).__name__}")


@contextlib.contextmanager
def _switched(objs: List[Any], enabled: bool) -> Iterator[None]:
    saved = [(o, o.enabled) for o in objs]
    try:
        for o in objs:
            o.enabled = enabled
        yield
    finally:
        for o, flag in saved:
            o.enabled = flag


def sensitivity(float_model: Module, qfloat_model: Module, batches: Iterable[Any],
                num_batches: Optional[int] = None) -> SensitivityReport:
    """Cost of each activation quantizer of ``qfloat_model`` at the model output (see the module docstring).

    ``float_model``: the float reference (a float model, or a QAT model run on its float path as in
    :func:`compare`, e.g. one with only ``equalize_activations`` applied); ``qfloat_model``: a calibrated QFloat
    model (``quantize_qat`` + ``calibrate``); its flags, mode and parameters are unchanged afterwards.
    ``batches``: input batches (arrays or Tensors, or ``(input, label)`` pairs), the first ``num_batches`` used.
    Raises TypeError for a non-Module or a model without QAT modules (a Q model: pass the QFloat model it was
    converted from), ValueError for an empty batch list or an uncalibrated model.
    """
    from .ptq._common import collect_batches
    from .ptq._state import float_path, quant_state
    from .quantize import _has_seen_data

    for arg, v in (("float_model", float_model), ("qfloat_model", qfloat_model)):
        if not isinstance(v, Module):
            raise TypeError(f"sensitivity: {arg} must be a megq Module, got {type(v).__name__}")
    if float_model is qfloat_model:
        raise ValueError("sensitivity: float_model and qfloat_model are the same object; pass the float model (or a "
                         "QAT copy of it to run on its float path)")
    data = collect_batches(batches, num_batches, "sensitivity")
    mods = [(n, m) for n, m in qfloat_model.named_modules() if isinstance(m, qat.QATModule)]
    acts = [(n, m) for n, m in mods if m.with_act and m.act_fake_quant is not None]
    weights = [m.weight_fake_quant for _, m in mods if m.with_weight and m.weight_fake_quant is not None]
    if not mods:
        raise TypeError("sensitivity: qfloat_model has no QAT modules (a Q model cannot switch quantizers off: pass "
                        "the QFloat model from quantize_qat + calibrate)")
    if not acts and not weights:
        raise ValueError("sensitivity: qfloat_model has no fake quants yet (calibrate it first)")
    for n, m in acts:
        ob = getattr(m, "act_observer", None)
        if ob is not None and not _has_seen_data(ob):
            raise ValueError(f"sensitivity: '{n}' has not been calibrated (run calibrate on qfloat_model first)")
    training = (float_model.training, qfloat_model.training)
    float_model.eval()
    qfloat_model.eval()
    try:
        with no_grad():
            with float_path(float_model):
                refs = [_array(float_model(Tensor(x))) for x in data]

        def score() -> Tuple[float, float]:
            s = _Score()
            with no_grad():
                for x, f in zip(data, refs):
                    q = _array(qfloat_model(Tensor(x)))
                    if q.shape != f.shape:
                        raise ValueError(f"sensitivity: output shapes differ: float {f.shape}, quantized {q.shape}")
                    s.add(f, q)
            return s.result()

        # every quantizer on, observers off (restored after); the float fake-quant path throughout
        with integer_eval(False), quant_state(qfloat_model, fake_quant=True, observer=False, restore=True):
            base_cos, base_sqnr = score()

            def gain(name: str, kind: str, objs: List[Any]) -> QuantizerGain:
                with _switched(objs, False):
                    c, s = score()
                return QuantizerGain(name, kind, c, s, c - base_cos, s - base_sqnr)
            rows = [gain(n, type(m).__name__, [m.act_fake_quant]) for n, m in acts]
            w_row = gain("<all weights float>", "-", weights)
            a_row = gain("<all activations float>", "-", [m.act_fake_quant for _, m in acts])
    finally:
        float_model.train(training[0])
        qfloat_model.train(training[1])
    rows.sort(key=lambda r: (-r.cosine_gain, -r.sqnr_gain_db))
    baseline = QuantizerGain("<quantized>", type(qfloat_model).__name__, base_cos, base_sqnr, 0.0, 0.0)
    notes = []
    total = sum(r.cosine_gain for r in rows)
    if rows:
        notes.append(f"single-quantizer cosine gains sum to {total:+.5f}; 1 - cosine of the quantized model is "
                     f"{1.0 - base_cos:.5f}")
    return SensitivityReport(rows, baseline, w_row, a_row, len(data), notes)
