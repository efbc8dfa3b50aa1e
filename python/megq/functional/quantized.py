"""int8 ops on :class:`~megq.qtensor.QuantizedTensor`: pooling, flatten, reshape, relu, elemwise ADD /
FUSE_ADD_RELU / MUL and concat, with the choice of who computes them.

``megq.functional``'s ops hand a QuantizedTensor to these functions, so a model's forward (with
``F.flatten(F.adaptive_avg_pool2d(x, 1), 1)``, ``M.MaxPool2d`` ...) runs unchanged on a Q model and on the
QFloat model's exact eval path; the quantized ``Elemwise``/``Concat`` modules and the QAT modules' exact eval
forwards call :func:`elemwise` and :func:`concat` with their output qparams.

Backend (``QuantizedTensor.backend``): "kernels" runs megq's C++ int8 kernels (:mod:`megq.kernels`, the Q model),
"reference" their numpy twins (:mod:`megq.reference`, the QFloat model's exact eval path). Both implement one
contract bit for bit (docs/operators.md). Pooling keeps the scale and zero point (MegEngine semantics); average
pooling rounds ``sum / count`` half away from zero.
"""
from __future__ import annotations

import functools
import threading
from types import ModuleType
from typing import Any, Callable, Sequence, Tuple

import numpy as np

from ..qtensor import QuantizedTensor

__all__ = ["ELEMWISE_METHODS", "adaptive_avg_pool2d", "avg_pool2d", "backend_library", "concat", "elemwise",
           "expect_quantized", "flatten", "max_pool2d", "relu", "requantize", "reshape", "traced"]

#: Elemwise modes with an int8 kernel (other MegEngine modes stay float: ``disable_quantize()``).
ELEMWISE_METHODS = ("ADD", "FUSE_ADD_RELU", "MUL")

# NCHW axis -> axis of the NHWC storage of a 4-D QuantizedTensor.
_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


# -- tracing -------------------------------------------------------------------------------------------------------

# While a thread records a Q model's forward (megq.module.quantized.plan builds an execution plan from it), its
# tracer sees every op below and every quantized layer's forward: ``tracer(name, fn, args, kwargs)`` calls ``fn``
# and returns its result. Other threads, and this one when not tracing, pay one attribute lookup per op.
_tracing = threading.local()


def traced(name: str) -> Callable[[Callable], Callable]:
    """Decorator: report calls of the decorated op as ``name`` to the current thread's tracer, if any."""
    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def op(*args: Any, **kwargs: Any) -> Any:
            tracer = getattr(_tracing, "tracer", None)
            if tracer is None:
                return fn(*args, **kwargs)
            return tracer(name, fn, args, kwargs)
        return op
    return decorate


# -- backend choice ------------------------------------------------------------------------------------------------

def backend_library(backend: str) -> ModuleType:
    """``megq.kernels`` for "kernels", ``megq.reference`` for "reference"."""
    # Imported here, not at the top: megq.kernels loads the compiled extension, which the float-only and
    # reference paths never need.
    if backend == "kernels":
        from .. import kernels

        return kernels
    from .. import reference

    return reference


def requantize(backend: str, q: np.ndarray, in_scale: Any, in_zero_point: int, out_scale: Any, out_zero_point: int,
               out_dtype: str) -> np.ndarray:
    """int8/uint8 -> int8/uint8 between two quantizations (same layout)."""
    if backend == "kernels":
        from .. import kernels

        return kernels.requantize(q, in_scale, in_zero_point, out_scale, out_zero_point, out_dtype)
    from ..reference.quantize import requantize_tensor

    return requantize_tensor(q, in_scale, in_zero_point, out_scale, out_zero_point, out_dtype)


def _pool2d(backend: str, q: np.ndarray, kernel_size: Tuple[int, int], stride: Tuple[int, int],
            padding: Tuple[int, int], mode: str, zero_point: int) -> np.ndarray:
    """Max ("max") or average pooling of NHWC data."""
    if backend == "kernels":
        from .. import kernels

        if mode == "max":
            return kernels.max_pool2d(q, kernel_size, stride, padding)
        return kernels.avg_pool2d(q, kernel_size, stride, padding, mode=mode, zero_point=zero_point)
    from ..reference.pooling import pool2d as reference_pool2d

    return reference_pool2d(q, kernel_size, stride, padding, (1, 1), mode, zero_point)


# -- helpers -------------------------------------------------------------------------------------------------------

def expect_quantized(x: Any, owner: str) -> QuantizedTensor:
    """``x`` as a QuantizedTensor, or a TypeError that says how to fix the model."""
    if not isinstance(x, QuantizedTensor):
        raise TypeError(f"{owner}: expected a QuantizedTensor input, got {type(x).__name__}; a QuantStub must "
                        f"quantize the float input before the first quantized layer")
    return x


def _pair(v: Any) -> Tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else tuple(int(x) for x in v)


def _nhwc(x: QuantizedTensor, op: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D quantized tensor, got shape {x.shape}")


def _store(logical: np.ndarray) -> np.ndarray:
    """Logical array -> storage layout (NHWC for 4-D)."""
    return np.ascontiguousarray(logical.transpose(0, 2, 3, 1)) if logical.ndim == 4 else logical


def _narrow(data: np.ndarray, qmin: int, qmax: int, dtype: str) -> np.ndarray:
    """Clamp to a range narrower than the storage dtype's (qint4, ... live in 8-bit storage)."""
    if (qmin, qmax) != ((-128, 127) if dtype == "int8" else (0, 255)):
        np.clip(data, qmin, qmax, out=data)
    return data


# -- weightless ops ------------------------------------------------------------------------------------------------

@traced("max_pool2d")
def max_pool2d(x: QuantizedTensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> QuantizedTensor:
    """Max pooling; scale and zero point unchanged."""
    _nhwc(x, "max_pool2d")
    k = _pair(kernel_size)
    return x.like(_pool2d(x.backend, x.data, k, k if stride is None else _pair(stride), _pair(padding), "max",
                          x.zero_point))


@traced("avg_pool2d")
def avg_pool2d(x: QuantizedTensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               mode: str = "average_count_exclude_padding") -> QuantizedTensor:
    """Average pooling (``sum / count`` rounded half away from zero); scale and zero point unchanged."""
    _nhwc(x, "avg_pool2d")
    k = _pair(kernel_size)
    return x.like(_pool2d(x.backend, x.data, k, k if stride is None else _pair(stride), _pair(padding), mode,
                          x.zero_point))


@traced("adaptive_avg_pool2d")
def adaptive_avg_pool2d(x: QuantizedTensor, oshp: Any) -> QuantizedTensor:
    """Average pooling to ``oshp``; the output size must divide the input size (uniform windows)."""
    _nhwc(x, "adaptive_avg_pool2d")
    oh, ow = _pair(oshp)
    n, c, h, w = x.shape
    if (oh, ow) == (1, 1):
        return x.like(backend_library(x.backend).global_avg_pool2d(x.data).reshape(n, 1, 1, c))
    if h % oh or w % ow:
        raise ValueError(f"adaptive_avg_pool2d: a quantized {h}x{w} input needs an output size that divides it, "
                         f"got {oh}x{ow}")
    return avg_pool2d(x, (h // oh, w // ow))


@traced("flatten")
def flatten(x: QuantizedTensor, start_axis: int = 0, end_axis: int = -1) -> QuantizedTensor:
    """Flattens in the logical (NCHW) order, so a following Linear sees the float model's feature order."""
    data = np.ascontiguousarray(x.int_repr_nchw())
    shape = data.shape
    end = end_axis % len(shape)
    new_shape = shape[:start_axis] + (int(np.prod(shape[start_axis:end + 1])),) + shape[end + 1:]
    return x.like(_store(data.reshape(new_shape)))


@traced("reshape")
def reshape(x: QuantizedTensor, shape: Sequence[int]) -> QuantizedTensor:
    """Reshapes the logical (NCHW-ordered) values."""
    data = np.ascontiguousarray(x.int_repr_nchw()).reshape(tuple(shape))
    return x.like(_store(data))


def activation_bounds(scale: Any, zero_point: int, qmin: int, qmax: int, activation: Any) -> Tuple[int, int]:
    """The integer clamp ``[lo, hi]`` that applies ``activation`` (None, "relu" or "relu6") to values quantized
    with ``scale`` / ``zero_point`` in ``[qmin, qmax]``: ReLU is ``lo = max(qmin, z)``; ReLU6 also
    ``hi = min(qmax, z + round_half_away(float32(6) / float32(scale)))`` (:func:`megq.kernels.relu_bounds`).
    Clamping after rounding equals fake-quantizing ``relu6(y)``: 6 quantizes to ``round_half_away(6 / s) + z``
    and the clamp commutes with the monotone rounding, so QFloat and Q agree bit for bit."""
    if activation is None:
        return int(qmin), int(qmax)
    if activation not in ("relu", "relu6"):
        raise ValueError(f"activation: expected None, 'relu' or 'relu6', got {activation!r}")
    from ..kernels.gemm import relu_bounds  # pure Python: the one definition of the bounds

    lo, hi = relu_bounds(activation, "int8" if qmin < 0 else "uint8", int(zero_point),
                         float(scale) if activation == "relu6" else None)
    return max(int(qmin), lo), min(int(qmax), hi)


@traced("relu")
def relu(x: QuantizedTensor) -> QuantizedTensor:
    """``max(q, z)``: the quantized zero is the zero point."""
    return x.like(np.maximum(x.data, np.asarray(max(x.zero_point, x.qmin), x.data.dtype)))


@traced("relu6")
def relu6(x: QuantizedTensor) -> QuantizedTensor:
    """``clip(q, lo, hi)`` with :func:`activation_bounds`' ReLU6 bounds; scale and zero point unchanged."""
    lo, hi = activation_bounds(x.scale, x.zero_point, x.qmin, x.qmax, "relu6")
    return x.like(np.clip(x.data, np.asarray(lo, x.data.dtype), np.asarray(hi, x.data.dtype)))


# -- ops with output qparams ---------------------------------------------------------------------------------------

@traced("elemwise")
def elemwise(method: str, a: QuantizedTensor, b: QuantizedTensor, out_scale: np.float32, out_zero_point: int,
             qmin: int, qmax: int, out_dtype: str, owner: str) -> QuantizedTensor:
    """``method`` (one of :data:`ELEMWISE_METHODS`) of two quantized tensors, requantized to the output qparams
    (contract in docs/operators.md). ``owner`` names the caller in error messages."""
    a, b = expect_quantized(a, owner), expect_quantized(b, owner)
    if method not in ELEMWISE_METHODS:
        raise ValueError(f"{owner}: {method!r} has no int8 kernel; supported: {ELEMWISE_METHODS}")
    if a.shape != b.shape:
        raise ValueError(f"{owner}: input shapes {a.shape} and {b.shape} differ (no broadcasting)")
    lib = backend_library(a.backend)
    fn = {"ADD": lib.add, "FUSE_ADD_RELU": lib.fuse_add_relu, "MUL": lib.mul}[method]
    data = fn(a.data, b.data, a_scale=a.scale, a_zero_point=a.zero_point, b_scale=b.scale,
              b_zero_point=b.zero_point, out_scale=out_scale, out_zero_point=out_zero_point, out_dtype=out_dtype)
    return QuantizedTensor(_narrow(data, qmin, qmax, out_dtype), out_scale, out_zero_point, qmin, qmax, a.backend)


@traced("concat")
def concat(inputs: Sequence[QuantizedTensor], axis: int, out_scale: np.float32, out_zero_point: int, qmin: int,
           qmax: int, out_dtype: str, owner: str) -> QuantizedTensor:
    """Concatenate along a logical (NCHW) axis, each input requantized to the output qparams."""
    inputs = [expect_quantized(x, owner) for x in inputs]
    if not inputs:
        raise ValueError(f"{owner}: needs at least one input")
    ndim = inputs[0].ndim
    if any(x.ndim != ndim for x in inputs):
        raise ValueError(f"{owner}: inputs have different ranks")
    axis = axis + ndim if axis < 0 else axis
    storage_axis = _NHWC_AXIS[axis] if ndim == 4 else axis
    parts = []
    for x in inputs:
        if x.scale == out_scale and x.zero_point == out_zero_point and x.dtype == out_dtype:
            parts.append(x.data)
        else:
            parts.append(requantize(x.backend, x.data, x.scale, x.zero_point, out_scale, out_zero_point, out_dtype))
    data = np.concatenate(parts, axis=storage_axis)
    np.clip(data, qmin, qmax, out=data)
    return QuantizedTensor(data, out_scale, out_zero_point, qmin, qmax, inputs[0].backend)
