"""Torch QAT modules with megq's numerics, named as megq's QAT modules so that state_dict keys match.

Each module holds the quantization children megq's ``QATModule`` holds (``weight_observer``, ``weight_fake_quant``,
``act_observer``, ``act_fake_quant``) and computes what megq's QAT module computes:

* ``ConvBn`` (``conv`` + ``bn`` + optional ReLU/ReLU6): MegEngine's BN folding (``calc_conv_bn_qat`` in
  MegEngine's ``module/qat/conv_bn.py``). Training: ``W·γ/sqrt(σ²_r+ε)`` (running variance) is observed and
  fake-quantized, convolved without bias, divided by ``γ/sqrt(σ²_r+ε)``, the conv bias added and the real BatchNorm run
  with batch statistics. Eval: weight and bias folded with the running statistics, the bias fake-quantized to qint32
  with scale ``s_in·s_w`` when the input carries qparams.
* ``Linear``, ``Add`` (``FUSE_ADD_RELU`` / ``ADD``), ``QuantStub``, ``DequantStub``; ``MaxPool`` and ``Dropout``
  wrap torch's (megq does not quantize them).

Activation qparams travel on the tensor a module returns (attribute ``_megq_qp``), as megq's ``tensor.qparams``:
max pooling passes them on, ``adaptive_avg_pool2d``/``flatten`` do not (megq's zoo calls them functionally).

Integer eval (``set_integer_eval(model, True)``, eval mode only): every quantized layer runs megq's int8 contract
(:mod:`megq.quantization.integer_layer`, :mod:`megq.reference`) on :class:`QT` activations: exact integer
accumulation in float64 (integers below 2**53, so any summation order is exact), then
``clamp(round_half_away(float32(acc) · M) + z)`` with ``M = float32(s_x)·float32(s_w)/float32(s_y)``; adds as
``float32(a - z_a)·(s_a/s_o) + float32(b - z_b)·(s_b/s_o)``; global average pooling ``round(float32(sum)/HW)``. These
values equal megq's QFloat eval and Q model bit for bit.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as TF

from ...quantization.dtype import get_dtype_meta
from .numerics import FakeQuantize, Observer, QParamsT, channel_view, fake_quant, round_half_away

__all__ = ["QT", "QATModule", "QuantStub", "DequantStub", "ConvBn", "Linear", "Add", "MaxPool", "Dropout",
           "set_integer_eval", "attach_qparams"]

_INT32_LIMIT = 2147483520.0  # largest float32 below 2**31
_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


class QT(NamedTuple):
    """An integer activation: ``q`` (float32 tensor of integers, NCHW or (N, C)), scale, zero point, bounds."""

    q: torch.Tensor
    scale: torch.Tensor
    zero_point: int
    qmin: int
    qmax: int
    dtype: str

    def dequantize(self) -> torch.Tensor:
        return (self.q - float(self.zero_point)) * self.scale


def attach_qparams(t: torch.Tensor, qp: Optional[QParamsT]) -> torch.Tensor:
    if qp is not None:
        t._megq_qp = qp  # type: ignore[attr-defined]
    return t


def _storage(dtype_name: str) -> str:
    return get_dtype_meta(dtype_name, "torch_qat").np_dtype_str


def _clamp_round(v: torch.Tensor, lo: int, hi: int, z: int) -> torch.Tensor:
    """``round_half_away(clamp(v, lo - z, hi - z)) + z`` (megq's requantization: clamp before rounding)."""
    v = torch.clamp(v, float(lo - z), float(hi - z))
    return round_half_away(v) + float(z)


def _act_qp(qp: QParamsT, owner: str) -> Tuple[torch.Tensor, int, int, int, str]:
    scale, zp, qmin, qmax, name = qp
    if scale.numel() != 1:
        raise ValueError(f"{owner}: activations must be quantized per tensor")
    st = _storage(name)
    if st not in _RANGES:
        raise ValueError(f"{owner}: activations must be stored in int8 or uint8, got {name}")
    return scale.reshape(()), 0 if zp is None else int(zp.reshape(())), qmin, qmax, st


class QATModule(torch.nn.Module):
    """Base: observer / fake-quant children and the integer-eval switch."""

    with_weight = True
    with_act = True

    def __init__(self) -> None:
        super().__init__()
        self.integer_eval = False

    def set_qconfig(self, make: Any, weight_channels: Optional[int] = None) -> None:
        """``make(kind)`` returns a fresh torch observer / fake quant for kind in ``weight_observer``,
        ``act_observer``, ``weight_fake_quant``, ``act_fake_quant`` (or None)."""
        if self.with_act:
            self.act_observer = make("act_observer")
            self.act_fake_quant = make("act_fake_quant")
        if self.with_weight:
            self.weight_observer = make("weight_observer", weight_channels)
            self.weight_fake_quant = make("weight_fake_quant")

    # -- float (fake-quant) path ---------------------------------------------------------------------------------
    def _quant(self, x: torch.Tensor, observer: Optional[Observer], fq: Optional[FakeQuantize]
               ) -> Tuple[torch.Tensor, Optional[QParamsT]]:
        qp = None
        if observer is not None:
            x = observer(x)
            qp = observer.get_qparams()
        if fq is not None and qp is not None:
            x = fq(x, qp)
        return x, qp

    def quant_act(self, y: torch.Tensor) -> torch.Tensor:
        y, qp = self._quant(y, self.act_observer, self.act_fake_quant)
        return attach_qparams(y, qp)

    def get_activation_qparams(self) -> QParamsT:
        return self.act_observer.get_qparams()

    def use_integer(self, x: Any) -> bool:
        if self.training or not self.integer_eval:
            return False
        for fq in (getattr(self, "act_fake_quant", None), getattr(self, "weight_fake_quant", None)):
            if fq is not None and not fq.enabled:
                return False
        for ob in (getattr(self, "act_observer", None), getattr(self, "weight_observer", None)):
            if ob is not None and ob.enabled:  # still collecting statistics: megq's quant_active() is False too
                return False
        return True


def set_integer_eval(model: torch.nn.Module, enabled: bool = True) -> torch.nn.Module:
    """Switch every torch QAT module of ``model`` to megq's integer eval (takes effect in eval mode)."""
    for m in model.modules():
        if isinstance(m, QATModule):
            m.integer_eval = bool(enabled)
    return model


class QuantStub(QATModule):
    """``fq_act(x)``; integer eval: ``clamp(round(x / s) + z)`` into :class:`QT`."""

    with_weight = False

    def forward(self, x: torch.Tensor) -> Any:
        if self.use_integer(x):
            s, z, qmin, qmax, st = _act_qp(self.get_activation_qparams(), "QuantStub")
            lo, hi = _RANGES[st]
            q = _clamp_round(x.to(torch.float32) / s, lo, hi, z)
            return QT(torch.clamp(q, float(qmin), float(qmax)), s, z, qmin, qmax, st)
        return self.quant_act(x)


class DequantStub(QATModule):
    """Identity in float; integer eval: ``(q - z) · s``."""

    with_weight = False
    with_act = False

    def forward(self, x: Any) -> torch.Tensor:
        return x.dequantize() if isinstance(x, QT) else x


def _fold(conv_w: torch.Tensor, conv_b: Optional[torch.Tensor], bn: torch.nn.BatchNorm2d, with_bias: bool):
    """MegEngine's folding (megq's ``module/qat/_bn_fold.py``), the same float32 operations in the same order."""
    oc = conv_w.shape[0]
    # torch's float32 sqrt on CPU is not correctly rounded (it differs from numpy's in the last bit); the float64
    # square root of a float32 value rounded to float32 is (53 >= 2*24 + 2 bits), so the fold matches megq's
    var = bn.running_var + torch.tensor(bn.eps, dtype=torch.float32)
    root = torch.sqrt(var.to(torch.float64)).to(torch.float32)
    istd = torch.ones_like(root) / root  # tensor / tensor: a true float32 division on every device
    gamma = bn.weight if bn.weight is not None else torch.ones(oc, device=conv_w.device)
    k = gamma * istd
    w = conv_w * k.reshape((oc,) + (1,) * (conv_w.dim() - 1))
    b = None
    if with_bias:
        beta = bn.bias if bn.bias is not None else torch.zeros(oc, device=conv_w.device)
        cb = conv_b if conv_b is not None else torch.zeros(oc, device=conv_w.device)
        b = beta + gamma * (cb - bn.running_mean) * istd
    return w, b, k


def _activation(y: torch.Tensor, activation: Optional[str]) -> torch.Tensor:
    if activation == "relu":
        return TF.relu(y)
    if activation == "relu6":
        return TF.relu6(y)
    return y


class _Weighted(QATModule):
    activation: Optional[str] = None

    def folded(self, training: bool):
        raise NotImplementedError

    def _weight_qp(self) -> QParamsT:
        return self.weight_observer.get_qparams()

    def quant_weight(self, w: torch.Tensor) -> Tuple[torch.Tensor, QParamsT]:
        w, qp = self._quant(w, self.weight_observer, self.weight_fake_quant)
        return w, qp

    def quant_bias(self, b: Optional[torch.Tensor], x: torch.Tensor, w_qp: Optional[QParamsT]
                   ) -> Optional[torch.Tensor]:
        """megq's ``apply_quant_bias`` / ``fake_quant_bias``: qint32 fake quant with scale ``s_in·s_w`` when both
        fake quants are enabled, the weight is symmetric int8-stored and the input symmetric int8 or asymmetric
        uint8 with a per-tensor scale; otherwise ``b`` unchanged."""
        wfq, afq = self.weight_fake_quant, self.act_fake_quant
        in_qp = getattr(x, "_megq_qp", None)
        if b is None or in_qp is None or w_qp is None or wfq is None or afq is None:
            return b
        if not (wfq.enabled and afq.enabled):
            return b
        if w_qp[1] is not None or _storage(w_qp[4]) != "int8":
            return b
        in_sym, in_st = in_qp[1] is None, _storage(in_qp[4])
        if not ((in_sym and in_st == "int8") or (not in_sym and in_st == "uint8")):
            return b
        if in_qp[0].numel() != 1:
            return b
        meta = get_dtype_meta("qint32", "bias")
        bscale = in_qp[0].reshape(()) * w_qp[0]
        return fake_quant(b, (bscale, None, int(meta.qmin), int(meta.qmax), "qint32"), axis=0)

    # -- integer eval ------------------------------------------------------------------------------------------
    def _integer(self, x: QT, op) -> QT:
        owner = type(self).__name__
        w, b, _ = self.folded(training=False)
        w = w.detach()
        s_w, zw, wqmin, wqmax, wname = self._weight_qp()
        if zw is not None and bool((zw != 0).any()):
            raise ValueError(f"{owner}: weights must be quantized symmetrically")
        sw_view = channel_view(s_w, w.dim(), 0)
        w_q = round_half_away(torch.clamp(w / sw_view, float(wqmin), float(wqmax)))
        s_y, z_y, qmin, qmax, st = _act_qp(self.get_activation_qparams(), owner)
        acc_scale = x.scale * s_w  # float32 product
        acc = op((x.q - float(x.zero_point)).to(torch.float64), w_q.to(torch.float64))
        if b is not None:
            bq = round_half_away(torch.clamp(b.detach() / acc_scale, -_INT32_LIMIT, _INT32_LIMIT))
            acc = acc + channel_view(bq.to(torch.float64), acc.dim(), 1)
        if acc.numel() and (acc.max() > 2147483647 or acc.min() < -2147483648):
            raise OverflowError(f"{owner}: accumulator exceeds int32")
        mult = (x.scale * s_w) / s_y
        v = acc.to(torch.float32) * channel_view(mult, acc.dim(), 1)
        lo, hi = qmin, qmax
        if self.activation is not None:
            lo = max(lo, z_y)
        if self.activation == "relu6":
            six = round_half_away(torch.tensor(6.0, dtype=torch.float32) / s_y.detach().cpu())
            hi = min(hi, z_y + int(six))
        return QT(_clamp_round(v, lo, hi, z_y), s_y, z_y, qmin, qmax, st)


class ConvBn(_Weighted):
    """megq's QAT ``ConvBn2d`` / ``ConvBnRelu2d`` / ``ConvBnRelu62d`` (``bn`` given) or ``Conv2d`` /
    ``ConvRelu2d`` (``bn`` None), sharing the torch ``conv`` and ``bn`` modules."""

    def __init__(self, conv: torch.nn.Conv2d, bn: Optional[torch.nn.BatchNorm2d],
                 activation: Optional[str] = None) -> None:
        super().__init__()
        if not isinstance(conv, torch.nn.Conv2d):
            raise TypeError(f"conv: expected a torch.nn.Conv2d, got {type(conv).__name__}")
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("conv: only numeric zero padding is supported")
        if bn is not None and (bn.running_mean is None or bn.running_var is None):
            raise ValueError("bn: the BatchNorm must track running statistics to be folded")
        self.conv = conv
        self.bn = bn
        self.activation = activation

    def folded(self, training: bool):
        if self.bn is None:
            return self.conv.weight, self.conv.bias, None
        return _fold(self.conv.weight, self.conv.bias, self.bn, with_bias=not training)

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
        c = self.conv
        return TF.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups)

    def forward(self, x: Any) -> Any:
        if isinstance(x, QT):
            if not self.use_integer(x):
                raise ValueError("ConvBn: integer input outside integer eval (eval mode, fake quants on, observers "
                                 "off)")
            return self._integer(x, lambda a, w: self._conv(a, w, None))
        training = self.training and self.bn is not None
        w, b, k = self.folded(training)
        w_qat, w_qp = self.quant_weight(w)
        b_qat = self.quant_bias(b, x, w_qp)
        y = self._conv(x, w_qat, b_qat)
        if training:
            y = y / k.reshape(1, -1, 1, 1)
            if self.conv.bias is not None:
                y = y + self.conv.bias.reshape(1, -1, 1, 1)
            y = self.bn(y)
        return self.quant_act(_activation(y, self.activation))


class Linear(_Weighted):
    """megq's QAT ``Linear`` / ``LinearRelu`` sharing the torch ``linear``'s parameters (registered as ``weight``
    and ``bias`` of this module, so the keys are megq's ``fc.weight`` / ``fc.bias``)."""

    def __init__(self, linear: torch.nn.Linear, activation: Optional[str] = None) -> None:
        super().__init__()
        if not isinstance(linear, torch.nn.Linear):
            raise TypeError(f"linear: expected a torch.nn.Linear, got {type(linear).__name__}")
        self.weight = linear.weight
        self.bias = linear.bias
        self.activation = activation

    def folded(self, training: bool):
        return self.weight, self.bias, None

    def forward(self, x: Any) -> Any:
        if isinstance(x, QT):
            if not self.use_integer(x):
                raise ValueError("Linear: integer input outside integer eval (eval mode, fake quants on, observers "
                                 "off)")
            if x.q.dim() != 2:
                raise ValueError(f"Linear: expected a 2-D integer input, got shape {tuple(x.q.shape)}")
            return self._integer(x, lambda a, w: a @ w.t())
        w_qat, w_qp = self.quant_weight(self.weight)
        b_qat = self.quant_bias(self.bias, x, w_qp)
        return self.quant_act(_activation(TF.linear(x, w_qat, b_qat), self.activation))


class Add(QATModule):
    """megq's QAT ``Elemwise("ADD" | "FUSE_ADD_RELU")``: ``fq_act(op(a, b))``."""

    with_weight = False

    def __init__(self, method: str = "FUSE_ADD_RELU") -> None:
        super().__init__()
        if method not in ("ADD", "FUSE_ADD_RELU"):
            raise ValueError(f"method: expected 'ADD' or 'FUSE_ADD_RELU', got {method!r}")
        self.method = method

    def forward(self, a: Any, b: Any) -> Any:
        if isinstance(a, QT) or isinstance(b, QT):
            if not (isinstance(a, QT) and isinstance(b, QT)) or not self.use_integer(a):
                raise ValueError("Add: integer inputs outside integer eval (both inputs integer, eval mode, fake "
                                 "quants on, observers off)")
            s, z, qmin, qmax, st = _act_qp(self.get_activation_qparams(), "Add")
            ma, mb = a.scale / s, b.scale / s
            v = (a.q - float(a.zero_point)) * ma + (b.q - float(b.zero_point)) * mb
            lo, hi = _RANGES[st]
            if self.method == "FUSE_ADD_RELU":
                lo = max(lo, z)
            q = torch.clamp(_clamp_round(v, lo, hi, z), float(qmin), float(qmax))
            return QT(q, s, z, qmin, qmax, st)
        y = a + b
        if self.method == "FUSE_ADD_RELU":
            y = TF.relu(y)
        return self.quant_act(y)


class MaxPool(torch.nn.Module):
    """``torch.nn.MaxPool2d`` passing its input's qparams on (megq's pooling keeps the quantization grid)."""

    def __init__(self, pool: torch.nn.MaxPool2d) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: Any) -> Any:
        if isinstance(x, QT):
            return x._replace(q=self.pool(x.q))  # -inf padding: padded taps never win, as megq's
        return attach_qparams(self.pool(x), getattr(x, "_megq_qp", None))


class Dropout(torch.nn.Module):
    """``torch.nn.Dropout`` (shared) that lets an integer activation through: integer eval runs in eval mode,
    where dropout is the identity, as megq's ``Dropout``."""

    def __init__(self, dropout: torch.nn.Dropout) -> None:
        super().__init__()
        self.dropout = dropout

    def forward(self, x: Any) -> Any:
        if isinstance(x, QT):
            if self.training:
                raise ValueError("Dropout: integer input in train mode")
            return x
        return self.dropout(x)  # its input is the pooled features, which carry no qparams in megq either


def global_pool_flatten(x: Any) -> Any:
    """``flatten(adaptive_avg_pool2d(x, 1), 1)``; integer: ``round_half_away(float32(sum) / (H·W))``, the raw
    integers summed exactly (float64)."""
    if isinstance(x, QT):
        n, c, h, w = x.q.shape
        s = x.q.to(torch.float64).sum(dim=(2, 3)).to(torch.float32)
        count = torch.tensor(float(h * w), dtype=torch.float32, device=s.device)  # a device divisor: true division
        return x._replace(q=round_half_away(s / count))
    return torch.flatten(TF.adaptive_avg_pool2d(x, 1), 1)
