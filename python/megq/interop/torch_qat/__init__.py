"""QAT in PyTorch with megq's numerics, brought back to megq exactly (torch is optional: ``pip install torch`` or
``pip install megq[interop]``).

* :func:`prepare_qat` turns a torchvision-layout ResNet or MobileNetV2 into a torch QAT model whose fake
  quantization, observers and BN folding are megq's (round half away from zero, float32 true division, MegEngine's
  scale rules, EMA momentum rule, Sync observers under ``torch.distributed``); it trains on any device and under
  ``DistributedDataParallel``.
* :func:`to_megq` returns the megq QFloat model with the trained weights, BN statistics and observer state, ready
  for ``megq.quantization.quantize``.
* :func:`set_integer_eval` switches the torch model's eval to megq's int8 arithmetic, which gives the deployed Q
  model's values bit for bit.

The torch modules live in ``megq.interop.torch_qat.numerics`` / ``.modules`` (importing them imports torch). See
docs/torch-qat.md.
"""
from __future__ import annotations

from typing import Any

__all__ = ["prepare_qat", "to_megq", "set_integer_eval"]


def _impl() -> Any:
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise ImportError("megq.interop torch QAT needs PyTorch: pip install torch (or pip install megq[interop])") \
            from e
    from . import convert

    return convert


def prepare_qat(torch_model: Any, qconfig: Any = "ema_fakequant_qconfig", sync: bool = True) -> Any:
    """See :func:`megq.interop.torch_qat.convert.prepare_qat`."""
    return _impl().prepare_qat(torch_model, qconfig, sync)


def to_megq(torch_qat_model: Any, megq_model: Any = None) -> Any:
    """See :func:`megq.interop.torch_qat.convert.to_megq`."""
    return _impl().to_megq(torch_qat_model, megq_model)


def set_integer_eval(torch_qat_model: Any, enabled: bool = True) -> Any:
    """Run the torch QAT model's eval in megq's int8 arithmetic (see :mod:`megq.interop.torch_qat.modules`)."""
    _impl()
    from .modules import set_integer_eval as _set

    return _set(torch_qat_model, enabled)
