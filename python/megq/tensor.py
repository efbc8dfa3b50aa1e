"""numpy-backed ``Tensor`` and ``Parameter`` with a reverse-mode tape.

A tensor records how it was computed (``_node``: a backward function plus its input tensors) only while a
``GradManager`` is recording and at least one input ``requires_grad`` (an attached parameter, or a value
derived from one). Outside ``with gm:`` nothing is recorded, so eval-mode forwards cost no memory for the tape.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np

# Number of GradManagers currently recording; ops record only when > 0 (see autodiff.GradManager).
_RECORDING = [0]


def is_recording() -> bool:
    """True while a ``GradManager`` is recording and ``no_grad`` is not active."""
    return _RECORDING[0] > 0


def _to_array(data: Any, dtype: Any = None) -> np.ndarray:
    """numpy array for ``data``; floats default to float32 and int64 to int32, as in MegEngine."""
    if isinstance(data, Tensor):
        data = data._data
    if dtype is not None:
        return np.asarray(data, dtype=dtype)
    arr = np.asarray(data)
    if arr.dtype.kind == "f" and arr.dtype != np.float32 and not isinstance(data, np.ndarray):
        # Python floats / lists become float32; an explicit float64 numpy array keeps its precision
        # (used by finite-difference checks).
        return arr.astype(np.float32)
    if arr.dtype.kind == "f" and arr.dtype == np.float16:
        return arr.astype(np.float32)
    if arr.dtype == np.int64 and not isinstance(data, np.ndarray):
        return arr.astype(np.int32)
    return arr


class Tensor:
    """An n-dimensional array (numpy ``ndarray`` underneath) that can take part in autodiff.

    ``Tensor(data, dtype=None)``: Python numbers and lists become float32 (ints: int32); numpy arrays keep their
    dtype, so float64 arrays stay float64 (useful for gradient checks). Arithmetic operators, ``sum``, ``mean``,
    ``reshape``, ``transpose`` and indexing are differentiable.
    """

    __slots__ = ("_data", "grad", "requires_grad", "_node", "qparams", "__weakref__")
    __array_priority__ = 1000  # make ``ndarray op Tensor`` defer to Tensor's reflected operators

    def __init__(self, data: Any, dtype: Any = None) -> None:
        self._data: np.ndarray = _to_array(data, dtype)
        self.grad: Optional[Tensor] = None
        self.requires_grad: bool = False
        # (backward_fn, inputs): backward_fn(grad_of_output) -> tuple of grads (or None) for each input
        self._node: Optional[Tuple[Callable, Tuple["Tensor", ...]]] = None
        # Free slot for the quantization layer (MegEngine attaches QParams to tensors); unused here.
        self.qparams: Any = None

    # -- numpy interop ------------------------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The underlying numpy array (not a copy; may be a non-contiguous view)."""
        return self._data

    def item(self) -> Any:
        """The single element as a Python number."""
        return self._data.item()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self._data if dtype is None else self._data.astype(dtype)

    def set_value(self, value: Any) -> None:
        """Replace the data in place (keeps identity, so optimizers and modules still see this tensor)."""
        self._data = _to_array(value, None if isinstance(value, np.ndarray) else self._data.dtype)

    def detach(self) -> "Tensor":
        """A tensor sharing the data but cut from the tape."""
        return Tensor(self._data)

    @property
    def shape(self) -> Tuple[int, ...]:
        return self._data.shape

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    def astype(self, dtype: Any) -> "Tensor":
        """A copy with another dtype (not differentiable)."""
        return Tensor(self._data.astype(dtype))

    def __bool__(self) -> bool:
        return bool(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Tensor({np.array2string(self._data, threshold=20)}, dtype={self._data.dtype})"

    # -- differentiable operators (implemented in megq.functional) ---------------------------------------------
    def __add__(self, other: Any) -> "Tensor":
        from .functional import elemwise

        return elemwise.add(self, other)

    def __radd__(self, other: Any) -> "Tensor":
        from .functional import elemwise

        return elemwise.add(other, self)

    def __sub__(self, other: Any) -> "Tensor":
        from .functional import elemwise

        return elemwise.sub(self, other)

    def __rsub__(self, other: Any) -> "Tensor":
        from .functional import elemwise

        return elemwise.sub(other, self)

    def __mul__(self, other: Any) -> "Tensor":
        from .functional import elemwise

        return elemwise.mul(self, other)

    def __rmul__(self, other: Any) -> "Tensor":
        from .functional import elemwise

        return elemwise.mul(other, self)

    def __truediv__(self, other: Any) -> "Tensor":
        from .functional import elemwise

        return elemwise.div(self, other)

    def __rtruediv__(self, other: Any) -> "Tensor":
        from .functional import elemwise

        return elemwise.div(other, self)

    def __neg__(self) -> "Tensor":
        from .functional import elemwise

        return elemwise.neg(self)

    def __pow__(self, exponent: float) -> "Tensor":
        from .functional import elemwise

        return elemwise.pow(self, exponent)

    def __matmul__(self, other: Any) -> "Tensor":
        from .functional import math

        return math.matmul(self, other)

    def __getitem__(self, index: Any) -> "Tensor":
        from .functional import tensor_ops

        return tensor_ops.getitem(self, index)

    def sum(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        from .functional import math

        return math.sum(self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        from .functional import math

        return math.mean(self, axis, keepdims)

    def reshape(self, *shape: Any) -> "Tensor":
        from .functional import tensor_ops

        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return tensor_ops.reshape(self, shape)

    def flatten(self, start_axis: int = 0, end_axis: int = -1) -> "Tensor":
        from .functional import tensor_ops

        return tensor_ops.flatten(self, start_axis, end_axis)

    def transpose(self, *axes: int) -> "Tensor":
        from .functional import tensor_ops

        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return tensor_ops.transpose(self, axes or None)

    # Comparisons return plain (non-differentiable) boolean tensors.
    def __eq__(self, other: Any) -> "Tensor":  # type: ignore[override]
        return Tensor(self._data == _to_array(other))

    def __lt__(self, other: Any) -> "Tensor":
        return Tensor(self._data < _to_array(other))

    def __gt__(self, other: Any) -> "Tensor":
        return Tensor(self._data > _to_array(other))

    __hash__ = object.__hash__


class Parameter(Tensor):
    """A trainable tensor held by a module. It gets a ``.grad`` once a ``GradManager`` it is attached to runs
    ``backward``."""

    __slots__ = ()

    def __init__(self, data: Any, dtype: Any = np.float32) -> None:
        super().__init__(data, dtype)


def as_tensor(x: Any) -> Tensor:
    """``x`` if it is a Tensor, else a new constant Tensor."""
    return x if isinstance(x, Tensor) else Tensor(x)


def make_result(
    out: np.ndarray, inputs: Sequence[Any], backward: Callable[[np.ndarray], Tuple[Optional[np.ndarray], ...]]
) -> Tensor:
    """Wrap ``out`` in a Tensor and, when recording and some input needs a gradient, put it on the tape.

    ``backward(g)`` receives the gradient of ``out`` (numpy) and returns one gradient (numpy or None) per input.
    Non-Tensor inputs are constants and receive no gradient.
    """
    t = Tensor.__new__(Tensor)
    t._data = out
    t.grad = None
    t.qparams = None
    t._node = None
    t.requires_grad = False
    if _RECORDING[0] > 0:
        for x in inputs:
            if isinstance(x, Tensor) and x.requires_grad:
                t.requires_grad = True
                t._node = (backward, tuple(inputs))
                break
    return t


def needs_grad(x: Any) -> bool:
    """Whether the backward of an op must produce a gradient for input ``x`` (saves work for constants)."""
    return isinstance(x, Tensor) and x.requires_grad and _RECORDING[0] > 0
