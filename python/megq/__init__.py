"""megq: MegEngine-style int8 quantization for CPU, on megq's own int8 kernels.

Float model (megq.module) -> quantize_qat -> QFloat model (observers + fake quant)
-> quantize -> Q model running megq's C++ int8 kernels (megq.kernels).

The compiled extension ``megq._C`` is imported lazily, so the pure-numpy parts
(tensor, autograd, modules, data) import even where the extension is absent.
"""
from __future__ import annotations

__version__ = "0.1.0"


def set_num_threads(n: int) -> None:
    """Set the number of threads megq's kernels use (>= 1). Default: the CPU count,
    or the ``MEGQ_NUM_THREADS`` environment variable."""
    from .kernels import set_num_threads as _set

    _set(n)


def get_num_threads() -> int:
    """Number of threads megq's kernels use."""
    from .kernels import get_num_threads as _get

    return _get()


# -- float layer exports (megq.Tensor, megq.Parameter, ...) are added below by the module layer --
from . import autodiff, data, functional, models, module, optimizer, random  # noqa: E402
from .serialization import SerializationError, load, register_serializable, save  # noqa: E402
from .tensor import Parameter, Tensor  # noqa: E402

__all__ = [
    "__version__", "set_num_threads", "get_num_threads", "Tensor", "Parameter", "tensor", "save", "load",
    "SerializationError", "register_serializable", "autodiff", "data", "functional", "models", "module",
    "optimizer", "random",
]


class _TensorModule(type(autodiff)):  # type: ignore[misc]
    """``megq.tensor`` is the module that defines Tensor and also, like MegEngine's ``megengine.tensor``, a callable
    that builds one: ``megq.tensor([1, 2], dtype="float32")``. ``device`` is accepted and ignored (CPU only)."""

    def __call__(self, data: object, dtype: object = None, device: object = None) -> "Tensor":
        return Tensor(data, dtype)


import sys as _sys  # noqa: E402

_sys.modules[__name__ + ".tensor"].__class__ = _TensorModule
del _sys
