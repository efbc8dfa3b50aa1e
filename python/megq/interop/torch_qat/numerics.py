"""megq's fake quantization and observers as PyTorch modules (CPU and CUDA, float32).

Every rule below is megq's (and MegEngine's FakeQuant kernel's), written once here for torch:

* rounding: round half away from zero, as ``trunc(v) + (frac >= .5) - (frac <= -.5)`` (``frac = v - trunc(v)`` is
  exact in float32); torch's ``torch.round`` rounds half to even and is never used;
* fake quant: ``q = clamp(round(x / s) + z, qmin, qmax)``, ``y = (q - z) * s`` with a true float32 division; NaN
  stays NaN; backward is the clipped straight-through estimator on the *rounded* value (``dx = dy`` where
  ``qmin <= round(x/s) + z <= qmax``), no gradient to the scale or zero point;
* qparams (MegEngine's ``create_qparams``): the range includes 0; symmetric ``s = max(max(-mn, mx) / ((qmax-qmin)/2),
  eps)``, asymmetric ``s = max((mx - mn) / (qmax - qmin), eps)``, ``z = clamp(qmin - round(mn / s), qmin, qmax)``;
* observers: MinMax keeps the running min/max; EMA ``m = m·rm + (1-rm)·batch`` with ``rm`` 0 for the first batch
  and ``momentum`` afterwards; per-channel observers reduce over every axis but 0. Under ``torch.distributed``
  (initialised, world size > 1) a synchronised observer all-reduces the batch min (MIN) and max (MAX) before
  updating, as MegEngine's ``SyncMinMaxObserver`` / ``SyncExponentialMovingAverageObserver`` do, so every rank holds
  the same statistics.

Buffers are named as megq's observers' (``min_val``, ``max_val``, ``momentum``, ``runtime_momentum``) so that a
torch QAT model's ``state_dict`` keys are the megq QAT model's.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ...quantization.dtype import get_dtype_meta

__all__ = ["round_half_away", "fake_quant", "calc_qparams", "Observer", "FakeQuantize", "QParamsT"]

_F32_MAX = float(torch.finfo(torch.float32).max)
_F32_LOWEST = float(torch.finfo(torch.float32).min)

# (scale, zero_point or None, qmin, qmax, dtype name); scale/zero_point float32 tensors of shape () or (C,)
QParamsT = Tuple[torch.Tensor, Optional[torch.Tensor], int, int, str]


def round_half_away(v: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, ties away from zero, in the tensor's float dtype."""
    t = torch.trunc(v)
    frac = v - t
    return t + (frac >= 0.5).to(v.dtype) - (frac <= -0.5).to(v.dtype)


def _bounds(like: torch.Tensor, qmin: int, qmax: int) -> Tuple[torch.Tensor, torch.Tensor]:
    # float32 bounds (qint32's 2**31 - 1 rounds to 2**31 in float32, exactly as numpy's np.float32(qmax))
    return (torch.tensor(float(qmin), dtype=like.dtype, device=like.device),
            torch.tensor(float(qmax), dtype=like.dtype, device=like.device))


def channel_view(v: torch.Tensor, ndim: int, axis: int = 0) -> torch.Tensor:
    """A per-channel ``(C,)`` vector reshaped to broadcast along ``axis``; a scalar stays a scalar."""
    if v.dim() == 0 or v.numel() == 1:
        return v.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = v.numel()
    return v.reshape(shape)


def _fq_arrays(x: torch.Tensor, s: torch.Tensor, z: Optional[torch.Tensor], qmin: int, qmax: int):
    lo, hi = _bounds(x, qmin, qmax)
    q = round_half_away(x / s)
    if z is not None:
        q = q + z
    mask = (q >= lo) & (q <= hi)
    q = torch.minimum(torch.maximum(q, lo), hi)  # NaN propagates, as numpy's clip
    y = (q - z) * s if z is not None else q * s
    return y, mask


class _FakeQuantFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, s, z, qmin, qmax):  # type: ignore[override]
        y, mask = _fq_arrays(x, s, z, qmin, qmax)
        ctx.save_for_backward(mask)
        return y

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return g * mask.to(g.dtype), None, None, None, None


def fake_quant(x: torch.Tensor, qp: QParamsT, axis: int = 0) -> torch.Tensor:
    """Fake-quantize float32 ``x`` with ``qp`` (per-channel scales along ``axis``); differentiable (clipped STE)."""
    scale, zp, qmin, qmax, _ = qp
    if x.dtype != torch.float32:
        raise TypeError(f"fake_quant: x must be float32, got {x.dtype}")
    s = channel_view(scale.to(x.device), x.dim(), axis)
    z = None if zp is None else channel_view(zp.to(device=x.device, dtype=torch.float32), x.dim(), axis)
    return _FakeQuantFn.apply(x, s, z, qmin, qmax)


def calc_qparams(min_val: torch.Tensor, max_val: torch.Tensor, symmetric: bool, qmin: int, qmax: int,
                 eps: float, dtype_name: str) -> QParamsT:
    """MegEngine's ``_calculate_qparams`` in float32 (elementwise for per-channel statistics)."""
    f32 = torch.float32
    zero = torch.zeros((), dtype=f32, device=min_val.device)
    mn = torch.minimum(min_val.to(f32), zero)
    mx = torch.maximum(max_val.to(f32), zero)
    eps_t = torch.tensor(eps, dtype=f32, device=min_val.device)  # float32(eps), as numpy's np.float32(eps)
    if symmetric:
        # divisors live on the data's device: CUDA divides by a *CPU* scalar as a multiplication by its reciprocal
        half_range = torch.tensor((qmax - qmin) / 2, dtype=f32, device=min_val.device)
        scale = torch.maximum(torch.maximum(-mn, mx) / half_range, eps_t)
        return scale, None, qmin, qmax, dtype_name
    scale = torch.maximum((mx - mn) / torch.tensor(float(qmax - qmin), dtype=f32, device=min_val.device), eps_t)
    zp = torch.tensor(float(qmin), dtype=f32, device=min_val.device) - round_half_away(mn / scale)
    zp = torch.clamp(zp, qmin, qmax).to(torch.int32)
    return scale, zp, qmin, qmax, dtype_name


def _dist_world() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


class Observer(torch.nn.Module):
    """megq's MinMax / EMA / per-channel observers in one torch module.

    ``Observer(dtype="qint8", symmetric=True, eps=1e-5, momentum=None, per_channel=False, num_channels=None,
    sync=True)``: ``momentum=None`` is a MinMax observer, a float an EMA observer. Pass-through ``forward`` that
    records statistics while ``enabled``; ``train(mode)`` sets ``enabled = mode`` (MegEngine).
    """

    def __init__(self, dtype: str = "qint8", symmetric: bool = True, eps: float = 1e-5,
                 momentum: Optional[float] = None, per_channel: bool = False, num_channels: Optional[int] = None,
                 sync: bool = True) -> None:
        super().__init__()
        meta = get_dtype_meta(dtype, "Observer")
        self.dtype_name = meta.name
        self.qmin, self.qmax = int(meta.qmin), int(meta.qmax)
        if not eps > 0:
            raise ValueError(f"Observer: eps must be positive, got {eps}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"Observer: momentum must be in [0, 1], got {momentum}")
        self.symmetric = bool(symmetric)
        self.eps = float(eps)
        self.per_channel = bool(per_channel)
        self.sync = bool(sync)
        self.ema = momentum is not None
        shape = (int(num_channels or 0),) if per_channel else ()
        self.register_buffer("min_val", torch.full(shape, _F32_MAX, dtype=torch.float32))
        self.register_buffer("max_val", torch.full(shape, _F32_LOWEST, dtype=torch.float32))
        if self.ema:
            self.register_buffer("momentum", torch.tensor(float(momentum), dtype=torch.float32))
            self.register_buffer("runtime_momentum", torch.zeros((), dtype=torch.float32))
        self.enabled = True

    def train(self, mode: bool = True) -> "Observer":
        super().train(mode)
        self.enabled = bool(mode)
        return self

    def _batch_min_max(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.per_channel:
            if x.dim() < 1:
                raise ValueError("Observer: per-channel observer needs at least 1-D input")
            c = x.shape[0]
            if self.min_val.numel() == 0:
                self.min_val = torch.full((c,), _F32_MAX, dtype=torch.float32, device=x.device)
                self.max_val = torch.full((c,), _F32_LOWEST, dtype=torch.float32, device=x.device)
            elif self.min_val.shape[0] != c:
                raise ValueError(f"Observer: observed {c} channels but the statistics have {self.min_val.shape[0]}")
            r = x.reshape(c, -1)
            return r.amin(dim=1), r.amax(dim=1)
        return x.amin(), x.amax()

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        if x.numel() == 0:
            return
        mn, mx = self._batch_min_max(x.detach().to(torch.float32))
        if self.sync and _dist_world() > 1:
            import torch.distributed as dist

            # MegEngine's Sync observers: reduce the batch statistics over all ranks before the update
            mn, mx = mn.clone(), mx.clone()
            dist.all_reduce(mn, op=dist.ReduceOp.MIN)
            dist.all_reduce(mx, op=dist.ReduceOp.MAX)
        if not (torch.isfinite(mn).all() and torch.isfinite(mx).all()):
            raise ValueError(f"Observer: input contains NaN or Inf (min {mn}, max {mx}); refusing to derive a "
                             "quantization scale from non-finite values")
        if self.ema:
            rm = self.runtime_momentum
            one = torch.ones((), dtype=torch.float32, device=rm.device)
            self.min_val.copy_(self.min_val * rm + (one - rm) * mn)
            self.max_val.copy_(self.max_val * rm + (one - rm) * mx)
            self.runtime_momentum.copy_(self.momentum)
        else:
            self.min_val.copy_(torch.minimum(self.min_val, mn))
            self.max_val.copy_(torch.maximum(self.max_val, mx))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            self.observe(x)
        return x

    def get_qparams(self) -> QParamsT:
        return calc_qparams(self.min_val, self.max_val, self.symmetric, self.qmin, self.qmax, self.eps,
                            self.dtype_name)

    def extra_repr(self) -> str:
        kind = "EMA" if self.ema else "MinMax"
        return (f"{kind}, dtype={self.dtype_name}, symmetric={self.symmetric}, per_channel={self.per_channel}, "
                f"sync={self.sync}, enabled={self.enabled}")


class FakeQuantize(torch.nn.Module):
    """``FakeQuantize(dtype)``: fake quant with the observer's qparams when ``enabled`` (not tied to train/eval)."""

    def __init__(self, dtype: str = "qint8") -> None:
        super().__init__()
        meta = get_dtype_meta(dtype, "FakeQuantize")
        self.dtype_name = meta.name
        self.qmin, self.qmax = int(meta.qmin), int(meta.qmax)
        self.enabled = True

    def forward(self, x: torch.Tensor, qp: QParamsT, axis: int = 0) -> torch.Tensor:
        if not self.enabled:
            return x
        if qp[4] != self.dtype_name:
            raise ValueError(f"FakeQuantize: observer dtype {qp[4]!r} is not the fake-quant dtype "
                             f"{self.dtype_name!r}")
        return fake_quant(x, qp, axis)

    def extra_repr(self) -> str:
        return f"dtype={self.dtype_name}, enabled={self.enabled}"
