"""``compare``: where a quantized model loses accuracy, layer by layer (in the spirit of PyTorch's numeric suite and
ONNX Runtime's ``qdq_loss_debug``, in one call).

For every quantized layer (a QAT module of a QFloat model, or a quantized module of a Q model) that the float model
has under the same name, over the same batches:

* **end to end**: the layer's quantized output in the quantized model against the float layer's output in the float
  model: the error made here plus everything that arrives from upstream;
* **isolated**: the float model's input of that layer, quantized with the scale and zero point the layer's input
  has in the quantized model, through the quantized layer and through the float layer: the error this layer makes
  by itself (its weights, bias, output grid and clipping; the input's rounding shows on the upstream layer's row).

Metrics, over all elements of all batches: SQNR ``10 log10(sum f^2 / sum (q - f)^2)`` in dB, cosine similarity
``<f, q> / (|f| |q|)`` and the largest absolute difference. Layers are ranked by isolated SQNR, worst first; the
model output is reported on its own row. A QFloat model's exact eval path gives the Q model's numbers bit for bit,
so either can be compared.

The float reference may itself be a QAT model: it then runs with its fake quants and observers off (its float
path). That is the reference to use after an algorithm that changes the float function's internals while keeping
its output, e.g. ``equalize_activations`` or ``equalize`` (they rescale channels between layers: against the
original float model every rescaled layer would look like a huge error). Pass a QAT model on which only the
algorithms that run before calibration were applied (``equalize``, ``equalize_activations``): after
``weight_rounding`` or ``bias_correction`` a QAT model's float weights are the corrected ones, and their error
would vanish from the report.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Optional

import numpy as np

from .. import reference
from ..autodiff import no_grad
from ..module import qat, quantized
from ..module.module import Module
from ..qtensor import QuantizedTensor
from ..tensor import Tensor

__all__ = ["compare", "CompareReport", "LayerError"]


def _values(x: Any) -> Optional[np.ndarray]:
    if isinstance(x, QuantizedTensor):
        return np.asarray(x.dequantize(), np.float64)
    if isinstance(x, Tensor):
        return np.asarray(x.numpy(), np.float64)
    if isinstance(x, np.ndarray):
        return x.astype(np.float64)
    return None


class _Acc:
    """Running sums for SQNR, cosine and max error."""

    def __init__(self) -> None:
        self.ff = self.qq = self.fq = self.ee = 0.0
        self.max_abs = 0.0
        self.n = 0

    def add(self, f: np.ndarray, q: np.ndarray) -> None:
        f, q = f.reshape(-1), q.reshape(-1)
        e = q - f
        self.ff += float(f @ f)
        self.qq += float(q @ q)
        self.fq += float(f @ q)
        self.ee += float(e @ e)
        self.max_abs = max(self.max_abs, float(np.abs(e).max(initial=0.0)))
        self.n += f.size

    def sqnr(self) -> float:
        if self.ee == 0:
            return math.inf
        if self.ff == 0:
            return -math.inf
        return 10.0 * math.log10(self.ff / self.ee)

    def cosine(self) -> float:
        d = math.sqrt(self.ff * self.qq)
        return self.fq / d if d > 0 else (1.0 if self.ee == 0 else 0.0)


@dataclass
class LayerError:
    """Errors of one layer's quantized output against float (see the module docstring)."""

    name: str
    kind: str
    sqnr_db: float
    cosine: float
    max_abs: float
    isolated_sqnr_db: Optional[float] = None
    isolated_cosine: Optional[float] = None
    isolated_max_abs: Optional[float] = None


@dataclass
class CompareReport:
    """``layers`` worst first (by isolated SQNR, then end-to-end SQNR), ``output`` the model output row."""

    layers: List[LayerError]
    output: LayerError
    num_batches: int = 0
    notes: List[str] = field(default_factory=list)

    def worst(self, n: int = 1) -> List[LayerError]:
        return self.layers[:n]

    def to_dict(self) -> Dict[str, Any]:
        def clean(d: Dict[str, Any]) -> Dict[str, Any]:  # JSON has no inf: +-1e308 keeps the order
            return {k: (math.copysign(1e308, v) if isinstance(v, float) and math.isinf(v) else v)
                    for k, v in d.items()}
        return {"num_batches": self.num_batches, "output": clean(asdict(self.output)),
                "layers": [clean(asdict(r)) for r in self.layers], "notes": list(self.notes)}

    def to_json(self, indent: Optional[int] = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self, limit: Optional[int] = None) -> str:
        """Markdown table, worst layer first (``limit`` rows at most), then the model output."""
        def f(v: Optional[float], fmt: str) -> str:
            return "-" if v is None else ("inf" if math.isinf(v) else format(v, fmt))
        rows = ["| layer | kind | SQNR dB | cosine | max err | isolated SQNR dB | isolated cosine | isolated max err |",
                "|---|---|---|---|---|---|---|---|"]
        for r in (self.layers if limit is None else self.layers[:limit]) + [self.output]:
            rows.append(f"| {r.name} | {r.kind} | {f(r.sqnr_db, '.1f')} | {f(r.cosine, '.5f')} | "
                        f"{f(r.max_abs, '.3g')} | {f(r.isolated_sqnr_db, '.1f')} | {f(r.isolated_cosine, '.5f')} | "
                        f"{f(r.isolated_max_abs, '.3g')} |")
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str) -> str:
        """A PNG of both SQNRs per layer in execution order (needs matplotlib; ImportError says so)."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError("CompareReport.plot needs matplotlib (pip install matplotlib)") from e
        if not isinstance(path, str) or not path:
            raise TypeError(f"path: expected a file name, got {path!r}")
        order = sorted(self.layers, key=lambda r: self._order.get(r.name, 0))

        def cap(v: Optional[float]) -> float:  # an exact layer (infinite SQNR) is drawn at 80 dB
            return 80.0 if v is None or math.isinf(v) else v
        fig, ax = plt.subplots(figsize=(max(6.0, 0.18 * len(order)), 4.0))
        ax.plot([cap(r.sqnr_db) for r in order], label="end to end")
        ax.plot([cap(r.isolated_sqnr_db) for r in order], label="isolated (float input)")
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([r.name for r in order], rotation=90, fontsize=6)
        ax.set_ylabel("SQNR (dB)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path

    _order: Dict[str, int] = field(default_factory=dict, repr=False)


def _quantized_layers(model: Module) -> Dict[str, Module]:
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (qat.DequantStub, quantized.DequantStub)):
            continue
        if isinstance(m, (qat.QATModule, quantized.QuantizedModule)):
            out[name] = m
    return out


def _requantize_like(x: np.ndarray, like: QuantizedTensor) -> QuantizedTensor:
    """``x`` (float, NCHW) quantized with ``like``'s scale, zero point, bounds, storage and backend."""
    data = reference.quantize(np.ascontiguousarray(x, np.float32), like.scale, like.zero_point, like.dtype)
    np.clip(data, like.qmin, like.qmax, out=data)
    return like.like(data)


def compare(float_model: Module, quantized_model: Module, batches: Iterable[Any],
            num_batches: Optional[int] = None) -> CompareReport:
    """Per-layer error of ``quantized_model`` (QFloat or Q) against ``float_model`` (see the module docstring).

    ``batches``: input batches (arrays or Tensors, or ``(input, label)`` pairs), the first ``num_batches`` used.
    ``float_model`` may be a QAT model (run on its float path, see the module docstring: the reference for
    equalized models). Both models are run in eval mode. Layers are matched by their ``named_modules`` name;
    quantized layers the float model does not have (e.g. the stubs around a skipped layer) are left out. Returns a
    :class:`CompareReport` (``.table()``, ``.to_json()``, ``.plot(path)``).
    """
    from .ptq._common import collect_batches
    from .ptq._state import float_path

    for arg, v in (("float_model", float_model), ("quantized_model", quantized_model)):
        if not isinstance(v, Module):
            raise TypeError(f"compare: {arg} must be a megq Module, got {type(v).__name__}")
    data = collect_batches(batches, num_batches, "compare")
    qlayers = _quantized_layers(quantized_model)
    if not qlayers:
        raise ValueError("compare: quantized_model has no QAT or quantized layers (quantize_qat / quantize it)")
    if float_model is quantized_model:
        raise ValueError("compare: float_model and quantized_model are the same object; pass the float model (or a "
                         "QAT copy of it to run on its float path)")
    ftable = dict(float_model.named_modules())
    names = [n for n in qlayers if n in ftable and n != ""]
    if not names:
        raise ValueError("compare: no quantized layer has a float counterpart of the same name")
    float_model.eval()
    quantized_model.eval()
    e2e = {n: _Acc() for n in names}
    iso = {n: _Acc() for n in names}
    out_acc = _Acc()
    order: Dict[str, int] = {}
    notes: List[str] = []
    state = {"isolating": False}

    for x in data:
        f_rec: Dict[str, tuple] = {}
        q_rec: Dict[str, tuple] = {}

        def rec(store: Dict[str, tuple], name: str):
            def hook(mod: Module, inputs: tuple, out: Any) -> None:
                if not state["isolating"] and name not in store:
                    store[name] = (inputs, out)
                    order.setdefault(name, len(order))
                return None
            return hook

        handles = [ftable[n].register_forward_hook(rec(f_rec, n)) for n in names]
        handles += [qlayers[n].register_forward_hook(rec(q_rec, n)) for n in names]
        try:
            with no_grad():
                with float_path(float_model):
                    yf = float_model(Tensor(x))
                yq = quantized_model(Tensor(x))
            for n in names:
                if n not in f_rec or n not in q_rec:
                    continue
                (fin, fout), (qin, qout) = f_rec[n], q_rec[n]
                fv, qv = _values(fout), _values(qout)
                if fv is None or qv is None or fv.shape != qv.shape:
                    continue
                e2e[n].add(fv, qv)
                # isolated: the float model's inputs, quantized as this layer's inputs are in the quantized model,
                # through the quantized layer and through the float layer (so the input's rounding, which the
                # upstream layer's row already shows, is not charged here)
                args, fargs = [], []
                for a_f, a_q in zip(fin, qin):
                    v = _values(a_f)
                    if isinstance(a_q, QuantizedTensor) and v is not None:
                        args.append(_requantize_like(v, a_q))
                        fargs.append(Tensor(args[-1].dequantize()))
                    elif v is not None:
                        args.append(Tensor(v.astype(np.float32)))
                        fargs.append(Tensor(v.astype(np.float32)))
                    else:
                        args.append(a_f)
                        fargs.append(a_f)
                state["isolating"] = True
                try:
                    with no_grad():
                        iv = _values(qlayers[n](*args))
                        with float_path(float_model):
                            rv = _values(ftable[n](*fargs))
                finally:
                    state["isolating"] = False
                if iv is not None and rv is not None and iv.shape == rv.shape:
                    iso[n].add(rv, iv)
        finally:
            for h in handles:
                h.remove()
        a, b = _values(yf), _values(yq)
        if a is not None and b is not None and a.shape == b.shape:
            out_acc.add(a, b)

    rows = []
    for n in names:
        if e2e[n].n == 0:
            notes.append(f"{n}: not run or output shapes differ; left out")
            continue
        i = iso[n]
        rows.append(LayerError(n, type(qlayers[n]).__name__, e2e[n].sqnr(), e2e[n].cosine(), e2e[n].max_abs,
                               i.sqnr() if i.n else None, i.cosine() if i.n else None, i.max_abs if i.n else None))
    rows.sort(key=lambda r: (r.isolated_sqnr_db if r.isolated_sqnr_db is not None else r.sqnr_db, r.sqnr_db))
    output = LayerError("<output>", type(quantized_model).__name__, out_acc.sqnr(), out_acc.cosine(), out_acc.max_abs)
    report = CompareReport(rows, output, len(data), notes)
    report._order = order
    return report
