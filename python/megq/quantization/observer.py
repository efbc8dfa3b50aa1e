"""Observers: modules that watch a tensor and produce its quantization parameters (``megengine.quantization``).

All observers are pass-through modules (``forward(x)`` returns ``x``) that record statistics only while ``enabled``.
``train(True)``/``eval()`` enable/disable them (MegEngine), through the ``training`` property below, so that both
``Module.train`` implementations (setting ``m.training`` or calling ``m.train``) work. Statistics are float32
``Tensor`` buffers, saved in ``state_dict``.

Scale rules (MegEngine's ``create_qparams`` in ``imperative/python/megengine/quantization/utils.py``): the observed
range always includes 0; symmetric
``scale = max(max(-mn, mx) / ((qmax - qmin) / 2), eps)``; asymmetric ``scale = max((mx - mn) / (qmax - qmin), eps)``,
``zero_point = clamp(qmin - round(mn / scale), qmin, qmax)``; all float32, round half away from zero.
A NaN or Inf reaching an enabled observer raises ``ValueError`` naming the observer.
"""
from __future__ import annotations

import math
import warnings
from abc import ABCMeta, abstractmethod
from typing import Any, Optional, Tuple

import numpy as np

from ..module.module import Module
from ..reference.rounding import round_half_away_from_zero as _rha
from ..tensor import Tensor
from .dtype import QuantDtypeMeta, create_quantized_dtype, get_dtype_meta
from .utils import QParams, QuantMode, create_qparams

__all__ = ["Observer", "MinMaxObserver", "SyncMinMaxObserver", "ExponentialMovingAverageObserver",
           "SyncExponentialMovingAverageObserver", "HistogramObserver", "PassiveObserver",
           "PerChannelMinMaxObserver", "PerChannelExponentialMovingAverageObserver", "MeanMinMaxObserver"]

_F32_MAX = np.finfo(np.float32).max
_F32_LOWEST = np.finfo(np.float32).min


def _np(x: Any) -> np.ndarray:
    return x.numpy() if isinstance(x, Tensor) else np.asarray(x)


class Observer(Module, metaclass=ABCMeta):
    """Base class: ``Observer(dtype, **kwargs)``; ``dtype`` a builtin name or ``QuantDtypeMeta``.

    Attributes ``dtype``, ``qmin``, ``qmax``, ``enabled``. ``enable()``/``disable()``; ``train(mode)`` sets
    ``enabled = mode``. Abstract: ``forward`` and ``get_qparams``.
    """

    def __init__(self, dtype: Any = "qint8", **kwargs: Any) -> None:
        if "narrow_range" in kwargs:
            kwargs.pop("narrow_range")
            warnings.warn("narrow_range is ignored: use dtype='qint8_narrow' instead", stacklevel=2)
        super().__init__(**kwargs)
        self.dtype: QuantDtypeMeta = get_dtype_meta(dtype, type(self).__name__)
        self.qmin = self.dtype.qmin
        self.qmax = self.dtype.qmax
        self.enabled = True

    # ``Module.train`` assigns ``m.training``; MegEngine's Observer.train enables/disables, so route it here.
    @property
    def training(self) -> bool:  # type: ignore[override]
        return self.__dict__.get("_training", True)

    @training.setter
    def training(self, mode: bool) -> None:
        self.__dict__["_training"] = bool(mode)
        self.enabled = bool(mode)

    def train(self, mode: bool = True, recursive: bool = True) -> "Observer":
        super().train(mode, recursive)
        return self

    def enable(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    def _label(self) -> str:
        return f"{type(self).__name__}" + (f" '{self.name}'" if self.name else "")

    def _check_finite(self, *values: np.ndarray) -> None:
        for v in values:
            if not np.all(np.isfinite(v)):
                raise ValueError(f"{self._label()}: input contains NaN or Inf (min/max {values}); refusing to derive "
                                 f"a quantization scale from non-finite values")

    @abstractmethod
    def forward(self, x: Any) -> Any:
        ...

    @abstractmethod
    def get_qparams(self) -> QParams:
        ...

    def get_quantized_dtype(self) -> np.dtype:
        """numpy quantized dtype (MegEngine style metadata) of the current qparams."""
        qp = self.get_qparams()
        zp = qp.zero_point if qp.mode == QuantMode.ASYMMERTIC else None
        return create_quantized_dtype(qp.dtype_meta, qp.scale, zp)

    def _extra_repr(self) -> str:
        return f"dtype={self.dtype.name}, enabled={self.enabled}"


class MinMaxObserver(Observer):
    """Running min/max over the observer's whole lifetime (not a moving average).

    ``MinMaxObserver(mode=QuantMode.SYMMERTIC, eps=1e-5, dtype="qint8")``.
    """

    def __init__(self, mode: QuantMode = QuantMode.SYMMERTIC, eps: float = 1e-5, dtype: Any = "qint8",
                 **kwargs: Any) -> None:
        super().__init__(dtype, **kwargs)
        if not isinstance(mode, QuantMode):
            raise TypeError(f"{type(self).__name__}: mode must be a QuantMode, got {mode!r}")
        if not eps > 0:
            raise ValueError(f"{type(self).__name__}: eps must be positive, got {eps}")
        self.mode = mode
        self.min_val = Tensor(np.array(_F32_MAX, np.float32))
        self.max_val = Tensor(np.array(_F32_LOWEST, np.float32))
        self.scale_limit = float(eps)

    def _calculate_qparams(self, inp_min_val: Any, inp_max_val: Any) -> QParams:
        return calculate_qparams(inp_min_val, inp_max_val, self.mode, self.dtype, self.scale_limit)

    def _batch_min_max(self, x: np.ndarray) -> Tuple[np.float32, np.float32]:
        mn, mx = np.float32(x.min()), np.float32(x.max())
        self._check_finite(mn, mx)
        return mn, mx

    def forward(self, x_orig: Any) -> Any:
        if self.enabled:
            x = _np(x_orig)
            if x.size:
                mn, mx = self._batch_min_max(x)
                self._update(mn, mx)
        return x_orig

    def _update(self, mn: Any, mx: Any) -> None:
        self.min_val._data = np.minimum(self.min_val._data, mn).astype(np.float32)
        self.max_val._data = np.maximum(self.max_val._data, mx).astype(np.float32)

    def get_qparams(self) -> QParams:
        return self._calculate_qparams(self.min_val._data, self.max_val._data)

    def reset(self) -> None:
        """Forget the statistics."""
        self.min_val._data = np.full_like(self.min_val._data, _F32_MAX)
        self.max_val._data = np.full_like(self.max_val._data, _F32_LOWEST)


def calculate_qparams(min_val: Any, max_val: Any, mode: QuantMode, dtype_meta: QuantDtypeMeta, eps: float,
                      axis: Optional[int] = None) -> QParams:
    """MegEngine's ``_calculate_qparams`` in float32 (elementwise for per-channel min/max)."""
    f32 = np.float32
    mn = np.minimum(np.asarray(min_val, f32), f32(0)).astype(f32)
    mx = np.maximum(np.asarray(max_val, f32), f32(0)).astype(f32)
    qmin, qmax = dtype_meta.qmin, dtype_meta.qmax
    if mode == QuantMode.SYMMERTIC:
        scale = np.maximum(-mn, mx) / f32((qmax - qmin) / 2)
        scale = np.maximum(scale, f32(eps)).astype(f32)
        zp = None
    else:
        scale = (mx - mn) / f32(qmax - qmin)
        scale = np.maximum(scale, f32(eps)).astype(f32)
        zp = f32(qmin) - _rha(mn / scale)
        zp = np.clip(zp, qmin, qmax).astype(np.int32)
    return create_qparams(mode, dtype_meta, scale, zp, axis)


class MeanMinMaxObserver(MinMaxObserver):
    """The mean over samples of each sample's min and max (NNCF's ``MEAN_MINMAX`` range estimator, its default for
    per-tensor activations): a sample is one item of the batch axis (axis 0), so the result does not depend on how
    the calibration set is batched. One unusual image widens a global min/max range for every image; here it moves
    the range by its share of the samples. ``MeanMinMaxObserver(mode=SYMMERTIC, eps=1e-5, dtype="qint8")``; megq
    extension. Statistics are float64 sums (``sums``: min sum, max sum, count), saved in ``state_dict``."""

    def __init__(self, mode: QuantMode = QuantMode.SYMMERTIC, eps: float = 1e-5, dtype: Any = "qint8",
                 **kwargs: Any) -> None:
        super().__init__(mode, eps, dtype, **kwargs)
        self.sums = Tensor(np.zeros(3, np.float64))

    def forward(self, x_orig: Any) -> Any:
        if self.enabled:
            x = _np(x_orig)
            if x.size:
                r = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
                mn, mx = r.min(axis=1).astype(np.float64), r.max(axis=1).astype(np.float64)
                self._check_finite(mn, mx)
                total = self.sums._data + np.array([mn.sum(), mx.sum(), r.shape[0]])
                self.sums._data = total
                self.min_val._data = np.array(total[0] / total[2], np.float32)
                self.max_val._data = np.array(total[1] / total[2], np.float32)
        return x_orig

    def reset(self) -> None:
        super().reset()
        self.sums._data = np.zeros(3, np.float64)


class SyncMinMaxObserver(MinMaxObserver):
    """MinMaxObserver whose batch min/max are all-reduced across processes under distributed training. megq runs
    in one process, so it acts exactly like MinMaxObserver. Deviation: it honours ``disable()``/``eval()``
    (MegEngine's ignores them because of a ``self.enable`` typo)."""


class ExponentialMovingAverageObserver(MinMaxObserver):
    """``ExponentialMovingAverageObserver(momentum=0.9, mode=SYMMERTIC, eps=1e-5, dtype="qint8")``:
    ``min = min·rm + (1-rm)·batch_min`` (same for max), then ``rm = momentum``; ``rm`` starts at 0 so the first
    batch sets min/max exactly."""

    def __init__(self, momentum: float = 0.9, mode: QuantMode = QuantMode.SYMMERTIC, eps: float = 1e-5,
                 dtype: Any = "qint8", **kwargs: Any) -> None:
        super().__init__(mode, eps, dtype, **kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1], got {momentum}")
        self.momentum = Tensor(np.array(momentum, np.float32))
        self.runtime_momentum = Tensor(np.array(0.0, np.float32))

    def set_momentum(self, momentum: float) -> None:
        self.momentum._data = np.array(momentum, np.float32)

    def _update(self, mn: Any, mx: Any) -> None:
        rm = self.runtime_momentum._data
        one = np.float32(1)
        self.min_val._data = (self.min_val._data * rm + (one - rm) * mn).astype(np.float32)
        self.max_val._data = (self.max_val._data * rm + (one - rm) * mx).astype(np.float32)
        self.runtime_momentum._data = self.momentum._data.copy()

    def reset(self) -> None:
        super().reset()
        self.runtime_momentum._data = np.array(0.0, np.float32)


class SyncExponentialMovingAverageObserver(ExponentialMovingAverageObserver):
    """Distributed variant of ExponentialMovingAverageObserver; identical in one process."""


class _PerChannelMixin:
    """Per-output-channel statistics: reduce over every axis but 0. Buffers have shape ``(C,)``; ``C`` is set by
    ``init_channels`` (QAT modules call it from ``set_qconfig``) or by the first observed tensor."""

    channel_axis = 0

    def _init_per_channel(self, num_channels: Optional[int]) -> None:
        n = 0 if num_channels is None else int(num_channels)
        self.min_val = Tensor(np.full((n,), _F32_MAX, np.float32))
        self.max_val = Tensor(np.full((n,), _F32_LOWEST, np.float32))

    def init_channels(self, num_channels: int) -> None:
        """Size the statistics for ``num_channels`` output channels (resets them if the size changes)."""
        if self.min_val.shape != (num_channels,):
            self.min_val._data = np.full((num_channels,), _F32_MAX, np.float32)
            self.max_val._data = np.full((num_channels,), _F32_LOWEST, np.float32)

    def _batch_min_max(self, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        if x.ndim < 1:
            raise ValueError(f"{self._label()}: per-channel observer needs at least 1-D input")
        c = x.shape[0]
        if self.min_val.shape[0] == 0:
            self.init_channels(c)
        elif self.min_val.shape[0] != c:
            raise ValueError(f"{self._label()}: observed {c} channels but the statistics have "
                             f"{self.min_val.shape[0]}")
        r = x.reshape(c, -1)
        mn, mx = r.min(axis=1).astype(np.float32), r.max(axis=1).astype(np.float32)
        self._check_finite(mn, mx)
        return mn, mx

    def _calculate_qparams(self, inp_min_val: Any, inp_max_val: Any) -> QParams:
        return calculate_qparams(inp_min_val, inp_max_val, self.mode, self.dtype, self.scale_limit, axis=0)


class PerChannelMinMaxObserver(_PerChannelMixin, MinMaxObserver):
    """Running min/max per output channel (axis 0 of a weight); per-channel scales (symmetric by default).
    ``PerChannelMinMaxObserver(mode=SYMMERTIC, eps=1e-5, dtype="qint8_narrow", num_channels=None)``. megq
    extension (MegEngine has no per-channel observer)."""

    def __init__(self, mode: QuantMode = QuantMode.SYMMERTIC, eps: float = 1e-5, dtype: Any = "qint8_narrow",
                 num_channels: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(mode, eps, dtype, **kwargs)
        self._init_per_channel(num_channels)


class PerChannelExponentialMovingAverageObserver(_PerChannelMixin, ExponentialMovingAverageObserver):
    """EMA of the per-channel min/max (first batch sets them exactly). megq extension."""

    def __init__(self, momentum: float = 0.9, mode: QuantMode = QuantMode.SYMMERTIC, eps: float = 1e-5,
                 dtype: Any = "qint8_narrow", num_channels: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(momentum, mode, eps, dtype, **kwargs)
        self._init_per_channel(num_channels)


class PassiveObserver(Observer):
    """Holds qparams set from outside (``set_qparams``); ``forward`` is the identity. Used by ``apply_easy_quant``.

    ``scale`` property: reading returns ``qparams.scale``; setting requires every value > 0.
    """

    def __init__(self, dtype: Any = "qint8", **kwargs: Any) -> None:
        super().__init__(dtype, **kwargs)
        self.qparams: Optional[QParams] = None
        self.orig_scale: Optional[np.ndarray] = None

    @property
    def scale(self) -> np.ndarray:
        if self.qparams is None:
            raise ValueError(f"{self._label()}: set_qparams has not been called")
        return self.qparams.scale

    @scale.setter
    def scale(self, value: Any) -> None:
        if self.qparams is None:
            raise ValueError(f"{self._label()}: set_qparams has not been called")
        v = np.asarray(_np(value), np.float32)
        if not np.all(v > 0):
            raise ValueError(f"{self._label()}: scale must be > 0, got {value!r}")
        self.qparams.scale = np.array(np.broadcast_to(v, self.qparams.scale.shape), np.float32)

    def set_qparams(self, qparams: QParams) -> None:
        if qparams is None or qparams.scale is None:
            raise ValueError(f"{self._label()}: set_qparams needs qparams with a scale")
        qp = qparams.copy()
        qp.scale = np.array(qparams.scale, np.float32)
        if qparams.zero_point is not None:
            qp.zero_point = np.array(qparams.zero_point, np.int32)
        if qp.dtype_meta is None:
            qp.dtype_meta = self.dtype
        elif qp.dtype_meta is not self.dtype:
            raise ValueError(f"{self._label()}: qparams dtype {qp.dtype_meta.name} is not the observer dtype "
                             f"{self.dtype.name}")
        self.qparams = qp
        self.orig_scale = np.array(qp.scale, np.float32)

    def get_qparams(self) -> Optional[QParams]:
        return self.qparams

    def forward(self, x: Any) -> Any:
        return x


# ---------------------------------------------------------------------------------------------------------------
# Histogram observer
# ---------------------------------------------------------------------------------------------------------------

_HIST_METHODS = ("l2", "percentile", "kl", "mse")


class HistogramObserver(MinMaxObserver):
    """Histogram of everything observed, then a range search at ``get_qparams`` time.

    ``HistogramObserver(bins=2048, upsample_rate=128, mode=SYMMERTIC, eps=1e-5, dtype="qint8", method="l2",
    percentile=99.99)``.

    Histogram accumulation is MegEngine's (a port of PyTorch's): the first batch is histogrammed on its own range;
    later batches widen the range so that the new bin width is an integer multiple of ``old_width /
    upsample_rate``, and the old histogram is up-sampled, shifted and down-sampled onto it.

    ``method`` (megq extension; MegEngine has only the first):

    * ``"l2"``: MegEngine's non-linear search: quantile bounds move inward in 1e-5 steps (the side needing fewer
      bins first) while the analytically integrated L2 quantization error (uniform density per bin, ``qmax-qmin+1``
      destination bins) decreases.
    * ``"percentile"``: the range keeping ``percentile`` % of the mass: ``|x| <= t`` for symmetric mode,
      ``(100-percentile)/2`` % cut from each tail for asymmetric mode.
    * ``"kl"``: entropy calibration as TensorRT (and NVIDIA's pytorch-quantization) do it, on the magnitude
      histogram: ``bins`` bins of ``|x|`` over ``[0, amax]`` (the histogram itself when its minimum is 0, e.g. ReLU
      outputs; else folded, density uniform within a bin), whose bins starting less than two histogram bin widths
      from 0 take the count of the first bin beyond (the zero spike), and any other point mass (a bin above 16
      times the median of the 17 bins around it and holding at least 0.1 % of the mass) takes that median inside
      the range (it is clipped with its full mass). For every threshold bin ``i`` from ``L`` to
      ``bins``: P = bins ``[0, i)`` with the mass beyond added to bin ``i-1``; Q = bins ``[0, i)`` merged into
      ``L`` levels (bin ``j`` in level ``floor(j·L/i)``), each level's mass spread evenly over its non-empty bins;
      the ``i`` minimising KL(P‖Q) wins (the largest on ties; candidates whose in-range mass fills fewer than two
      levels are skipped, they would score 0 by clipping everything): range ``±amax·i/bins``. ``L = (qmax-qmin+1)//2``
      (128 for int8). Asymmetric mode keeps ``r·[min(min,0), max(max,0)]`` with ``r = i/bins``; ``L = qmax-qmin+1``
      for one-signed data (pytorch-quantization's unsigned case), else the longer side's share of them.
    * ``"mse"``: among candidate ranges ``r·[-amax, amax]`` (asymmetric: ``r·[min(min,0), max(max,0)]``), ``r`` in
      200 geometric steps from ``2/bins`` to 1, minimise the expected squared error of fake quantization (rounding
      and clipping) over the histogram (4 sample points per bin, at (k+0.5)/4 of it); first (smallest) on ties.

    Deviation from MegEngine: the histogram honours ``enabled`` (MegEngine's always updates), so calibrate with
    ``model.eval(); enable_observer(model)`` exactly as for the other observers. The histogram is kept in float64
    (counts stay exact beyond 2^24).
    """

    def __init__(self, bins: int = 2048, upsample_rate: int = 128, mode: QuantMode = QuantMode.SYMMERTIC,
                 eps: float = 1e-5, dtype: Any = "qint8", method: str = "l2", percentile: float = 99.99,
                 **kwargs: Any) -> None:
        super().__init__(mode, eps, dtype, **kwargs)
        if not isinstance(bins, (int, np.integer)) or bins < 2:
            raise ValueError(f"HistogramObserver: bins must be an int >= 2, got {bins!r}")
        if not isinstance(upsample_rate, (int, np.integer)) or upsample_rate < 1:
            raise ValueError(f"HistogramObserver: upsample_rate must be a positive int, got {upsample_rate!r}")
        if method not in _HIST_METHODS:
            raise ValueError(f"HistogramObserver: method must be one of {_HIST_METHODS}, got {method!r}")
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"HistogramObserver: percentile must be in (0, 100], got {percentile}")
        self.bins = int(bins)
        self.upsample_rate = int(upsample_rate)
        self.method = method
        self.percentile = float(percentile)
        self.dst_nbins = self.dtype.qmax - self.dtype.qmin + 1
        h = np.zeros(self.bins, np.float64)
        h[0] = -1
        self.histogram = Tensor(h)

    # -- accumulation ------------------------------------------------------------------------------------------
    def _has_data(self) -> bool:
        return self.histogram._data[0] != -1

    def forward(self, x_orig: Any) -> Any:
        if self.enabled:
            x = _np(x_orig)
            if x.size:
                self._accumulate(x)
        return x_orig

    def _accumulate(self, x: np.ndarray) -> None:
        x = x.astype(np.float32, copy=False).ravel()
        new_min, new_max = np.float32(x.min()), np.float32(x.max())
        self._check_finite(new_min, new_max)
        bins = self.bins
        if not self._has_data():
            hist = _histogram(x, bins, float(new_min), float(new_max))
        else:
            old_min, old_max = float(self.min_val._data), float(self.max_val._data)
            old = self.histogram._data
            cmin, cmax = min(float(new_min), old_min), max(float(new_max), old_max)
            if old_max == old_min:
                # point mass so far: histogram the new data on the union range and drop the old mass into its bin
                hist = _histogram(x, bins, cmin, cmax)
                hist[_bin_index(old_min, cmin, cmax, bins)] += old.sum()
            elif cmin == old_min and cmax == old_max:
                hist = _histogram(x, bins, cmin, cmax) + old
            else:
                cmin, cmax, down, start = self._adjust_min_max(cmin, cmax, old_min, old_max)
                hist = _histogram(x, bins, cmin, cmax)
                hist = _combine_histograms(hist, old, self.upsample_rate, down, start, bins)
            new_min, new_max = np.float32(cmin), np.float32(cmax)
        self.histogram._data = hist.astype(np.float64)
        self.min_val._data = np.array(new_min, np.float32)
        self.max_val._data = np.array(new_max, np.float32)

    def _adjust_min_max(self, cmin: float, cmax: float, old_min: float, old_max: float):
        """Widen [cmin, cmax] so that its bin width is an integer multiple of old_width / upsample_rate."""
        hist_bin_width = (old_max - old_min) / (self.bins * self.upsample_rate)
        down = int(np.ceil((cmax - cmin) / (self.bins * hist_bin_width)))
        down = max(down, 1)
        e = down * (self.bins * hist_bin_width) - (cmax - cmin)
        cmax = cmax + e / 2
        cmin = cmin - e / 2
        start = int(np.floor((old_min - cmin) / hist_bin_width + 0.5))
        return cmin, cmax, down, start

    # -- qparams -----------------------------------------------------------------------------------------------
    def get_qparams(self) -> QParams:
        if not self._has_data():
            return self._calculate_qparams(self.min_val._data, self.max_val._data)
        mn, mx = self._search_range()
        return self._calculate_qparams(np.float32(mn), np.float32(mx))

    def _search_range(self) -> Tuple[float, float]:
        hmin, hmax = float(self.min_val._data), float(self.max_val._data)
        hist = self.histogram._data.astype(np.float64)
        if hmax <= hmin or hist.sum() <= 0:
            return hmin, hmax
        if self.method == "l2":
            return _l2_search(hist, hmin, hmax, self.dst_nbins)
        if self.method == "percentile":
            return _percentile_range(hist, hmin, hmax, self.percentile, self.mode)
        if self.method == "kl":
            return _entropy_range(hist, hmin, hmax, self.mode, self.dtype)
        return _candidate_search(hist, hmin, hmax, self.mode, self.dtype, self.scale_limit, self.method)

    def _extra_repr(self) -> str:
        return f"dtype={self.dtype.name}, method={self.method!r}, bins={self.bins}, enabled={self.enabled}"

    # QATModule does not attach this observer's qparams to output tensors when no fake quant uses them (the search
    # runs per call); ``get_qparams()`` / ``QATModule.get_activation_qparams()`` compute them on demand.
    lazy_qparams = True


def _histogram(x: np.ndarray, bins: int, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        h = np.zeros(bins, np.float64)
        h[0] = x.size
        return h
    h, _ = np.histogram(x, bins, (lo, hi))
    return h.astype(np.float64)


def _bin_index(v: float, lo: float, hi: float, bins: int) -> int:
    if hi <= lo:
        return 0
    return int(min(bins - 1, max(0, math.floor((v - lo) / (hi - lo) * bins))))


def _combine_histograms(new_hist: np.ndarray, orig_hist: np.ndarray, upsample_rate: int, downsample_rate: int,
                        start_idx: int, nbins: int) -> np.ndarray:
    """MegEngine/PyTorch: up-sample ``orig_hist`` (piecewise constant), place at ``start_idx`` of the finer grid,
    integrate and down-sample onto the new bins, then add to ``new_hist``."""
    upsampled = np.repeat(orig_hist, upsample_rate)
    fine = np.zeros(nbins * downsample_rate, np.float64)
    end = min(start_idx + nbins * upsample_rate, fine.size)
    start = max(start_idx, 0)
    fine[start:end] = upsampled[start - start_idx:end - start_idx]
    integral = np.cumsum(fine)[downsample_rate - 1::downsample_rate]
    shifted = np.zeros(nbins, np.float64)
    shifted[1:] = integral[:-1]
    return new_hist + (integral - shifted) / upsample_rate


def _l2_error(hist: np.ndarray, bin_width: float, start_bin: int, end_bin: int, dst_nbins: int) -> float:
    """Approximate L2 quantization error of using bins [start_bin, end_bin] as the range (vectorised form of
    MegEngine's ``_compute_quantization_error``)."""
    dst_w = bin_width * (end_bin - start_bin + 1) / dst_nbins
    if dst_w == 0.0:
        return 0.0
    src = np.arange(hist.size, dtype=np.float64)
    b = (src - start_bin) * bin_width
    e = b + bin_width
    db = np.clip(np.floor(b / dst_w), 0, dst_nbins - 1)
    de = np.clip(np.floor(e / dst_w), 0, dst_nbins - 1)
    cb = db * dst_w + dst_w / 2
    ce = de * dst_w + dst_w / 2
    density = hist / bin_width

    def norm(a, c):
        return (c * c * c - a * a * a) / 3

    same = norm(b - cb, e - cb)
    split = norm(b - cb, dst_w / 2) + (de - db - 1) * norm(-dst_w / 2, dst_w / 2) + norm(-dst_w / 2, e - ce)
    return float(np.sum(density * np.where(db == de, same, split)))


def _l2_search(hist: np.ndarray, hmin: float, hmax: float, dst_nbins: int) -> Tuple[float, float]:
    bins = hist.size
    bin_width = (hmax - hmin) / bins
    total = hist.sum()
    csum = np.cumsum(hist)
    stepsize = 1e-5
    alpha, beta = 0.0, 1.0
    start_bin, end_bin = 0, bins - 1
    norm_min = float("inf")
    while alpha < beta:
        next_alpha = alpha + stepsize
        next_beta = beta - stepsize
        lo, hi = start_bin, end_bin
        while lo < end_bin and csum[lo] < next_alpha * total:
            lo += 1
        while hi > start_bin and csum[hi] > next_beta * total:
            hi -= 1
        next_start, next_end = start_bin, end_bin
        if (lo - start_bin) > (end_bin - hi):
            next_start = lo
            alpha = next_alpha
        else:
            next_end = hi
            beta = next_beta
        if next_start == start_bin and next_end == end_bin:
            continue
        norm = _l2_error(hist, bin_width, next_start, next_end, dst_nbins)
        if norm > norm_min:
            break
        norm_min = norm
        start_bin, end_bin = next_start, next_end
    return hmin + bin_width * start_bin, hmin + bin_width * (end_bin + 1)


def _cdf(hist: np.ndarray, hmin: float, hmax: float):
    edges = np.linspace(hmin, hmax, hist.size + 1)
    cum = np.concatenate([[0.0], np.cumsum(hist)])
    return lambda v: np.interp(v, edges, cum), edges, cum


def _percentile_range(hist: np.ndarray, hmin: float, hmax: float, pct: float, mode: QuantMode):
    F, edges, cum = _cdf(hist, hmin, hmax)
    total = cum[-1]
    p = pct / 100.0
    if mode == QuantMode.SYMMERTIC:
        amax = max(abs(hmin), abs(hmax))
        lo, hi = 0.0, amax
        target = p * total
        if F(amax) - F(-amax) <= target:
            return -amax, amax
        for _ in range(100):
            mid = (lo + hi) / 2
            if F(mid) - F(-mid) >= target:
                hi = mid
            else:
                lo = mid
        return -hi, hi
    tail = (1.0 - p) / 2 * total
    # inverse CDF on the strictly increasing part
    lo_v = float(np.interp(tail, cum, edges)) if tail > 0 else hmin
    hi_v = float(np.interp(total - tail, cum, edges)) if tail > 0 else hmax
    return lo_v, hi_v


def _candidates(hmin: float, hmax: float, mode: QuantMode, bins: int, n: int = 200):
    rs = np.unique(np.concatenate([np.geomspace(min(1.0, 2.0 / bins), 1.0, n), [1.0]]))
    if mode == QuantMode.SYMMERTIC:
        amax = max(abs(hmin), abs(hmax))
        return [(-r * amax, r * amax) for r in rs]
    lo, hi = min(hmin, 0.0), max(hmax, 0.0)
    return [(r * lo, r * hi) for r in rs]


def _entropy_range(hist: np.ndarray, hmin: float, hmax: float, mode: QuantMode,
                   dtype_meta: QuantDtypeMeta) -> Tuple[float, float]:
    """Entropy calibration (TensorRT's, as in NVIDIA pytorch-quantization's ``_compute_amax_entropy``); the rules
    are in the :class:`HistogramObserver` docstring.

    Why this form and not megq's first one (ranges searched on a grid of 8 sub-bins per level, resampled from the
    histogram): a grid finer than the histogram is filled by interpolation, uniform inside each histogram bin, so
    for narrow ranges Q equals P and KL only sees the clipping; and the spike of exact zeros (half of every ReLU
    output), smeared by Q over its level, costs less the narrower the levels. Both pushed the threshold into the
    tail (ReLU outputs of N(0, 1) clipped at 1.9 instead of ~4), and ResNet-8 lost 11 points with the KL preset.
    Here a level always covers at least one histogram bin, and the bins near zero take the count of the first bin
    beyond them: zeros are exact at every scale, and the histogram cannot tell them from values within two bin
    widths of 0 (the bin holding 0 may start a bin below it, and merging histograms of different ranges spreads a
    bin over two).
    """
    nbins = hist.size
    lo, hi = min(hmin, 0.0), max(hmax, 0.0)
    amax = max(-lo, hi)
    width = (hmax - hmin) / nbins
    if hmin == 0.0:
        mag = hist.astype(np.float64).copy()  # same edges: the magnitude histogram is the histogram
    else:  # mass of |x| <= e, density uniform within each histogram bin
        F, _, _ = _cdf(hist, hmin, hmax)
        e = np.linspace(0.0, amax, nbins + 1)
        mag = np.maximum(np.diff(F(e) - F(-e)), 0.0)
    near_zero = min(nbins - 1, int(np.ceil(2.0 * width * nbins / amax - 1e-9)))  # bins starting below 2 widths
    mag[:near_zero] = mag[near_zero]
    flat = _flatten_point_masses(mag)
    span = dtype_meta.qmax - dtype_meta.qmin + 1
    if mode == QuantMode.SYMMERTIC:
        levels = span // 2
    elif -lo < 2 * width or hi < 2 * width:  # one-signed data (a side within two bins of 0 is empty)
        levels = span
    else:  # the longer side's share of the levels
        levels = int(round(span * amax / (hi - lo)))
    levels = max(1, min(levels, nbins))
    best_i, best_kl = nbins, np.inf
    # beyond[i]: mass of bins [i, nbins), point masses included: clipping one costs what clipping its mass costs
    beyond = np.concatenate([np.cumsum(mag[::-1])[::-1], [0.0]])
    for i in range(levels, nbins + 1):
        inside = flat[:i]
        p = inside.copy()
        p[-1] += beyond[i]
        level = (np.arange(i) * levels) // i
        nz = inside > 0
        sums = np.bincount(level, weights=inside, minlength=levels)
        counts = np.bincount(level, weights=nz, minlength=levels)
        q = np.where(nz, sums[level] / np.maximum(counts[level], 1), 0.0)
        ps, qs = p.sum(), q.sum()
        if ps <= 0 or qs <= 0 or np.count_nonzero(counts) < 2:
            # in-range mass in one level (or none): Q has no shape left, so clipping everything into the last
            # bin would score KL = 0 (TensorRT's search has this hole on data with a gap around 0)
            continue
        pn, qn = p / ps, q / qs
        has = pn > 0
        if np.any(has & (qn <= 0)):
            continue  # P has mass where Q has none: infinite divergence
        kl = float(np.sum(pn[has] * np.log(pn[has] / qn[has])))
        if kl <= best_kl:  # ties go to the larger threshold
            best_i, best_kl = i, kl
    r = best_i / nbins
    if mode == QuantMode.SYMMERTIC:
        return -r * amax, r * amax
    return r * lo, r * hi


def _flatten_point_masses(mag: np.ndarray, half_window: int = 8, ratio: float = 16.0,
                           min_share: float = 1e-3) -> np.ndarray:
    """Bins holding a point mass (more than ``ratio`` times the median of the ``2·half_window + 1`` bins around
    them, and at least ``min_share`` of all the mass) take that median.

    Used for the in-range part of P and Q only (the clipped mass beyond a threshold keeps every point mass).
    Why: KL's Q spreads a level's mass evenly over its bins, a fair model of quantizing a density but not of a point
    mass, which quantization moves whole to one level. Left in, a point mass (the background value of normalised
    images, up to half of a QuantStub's input) costs KL in proportion to its level's width, so the search picks the
    narrowest range that still holds it and clips everything beyond: on Fashion-MNIST inputs (background -0.81,
    maximum 2.02) the range became +-0.81, saturating every bright pixel.
    """
    n = mag.size
    padded = np.concatenate([np.full(half_window, np.nan), mag, np.full(half_window, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half_window + 1)
    med = np.nanmedian(windows, axis=1)
    spike = (mag > ratio * med) & (mag >= min_share * mag.sum())
    if n < 2 * half_window + 1 or not spike.any():
        return mag
    out = mag.copy()
    out[spike] = med[spike]
    return out


def _candidate_search(hist: np.ndarray, hmin: float, hmax: float, mode: QuantMode, dtype_meta: QuantDtypeMeta,
                      eps: float, method: str) -> Tuple[float, float]:
    """Best candidate range for "mse" (all candidates evaluated at once)."""
    if method != "mse":
        raise ValueError(f"_candidate_search: method must be 'mse', got {method!r}")
    qmin, qmax = dtype_meta.qmin, dtype_meta.qmax
    cands = _candidates(hmin, hmax, mode, hist.size)
    lo = np.array([c[0] for c in cands], np.float32)
    hi = np.array([c[1] for c in cands], np.float32)
    qp = calculate_qparams(lo, hi, mode, dtype_meta, eps)
    s = qp.scale.astype(np.float32)[:, None]
    z = (qp.zero_point.astype(np.float32) if qp.zero_point is not None else np.zeros(len(cands), np.float32))[:, None]
    sub = 4
    width = (hmax - hmin) / hist.size
    offs = (np.arange(sub) + 0.5) / sub
    keep = hist > 0
    pts = (hmin + (np.nonzero(keep)[0][:, None] + offs[None, :]) * width).ravel().astype(np.float32)
    wts = np.repeat(hist[keep] / sub, sub)
    q = np.clip(_rha(pts[None, :] / s) + z, qmin, qmax)
    y = (q - z) * s
    err = ((pts[None, :].astype(np.float64) - y) ** 2) @ wts
    best = int(np.argmin(err))  # first (smallest range) among equal errors
    return float(cands[best][0]), float(cands[best][1])
