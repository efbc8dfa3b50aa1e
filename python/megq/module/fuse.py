"""Fusing separate conv/linear, BN and ReLU modules into MegEngine's fused modules, and BN folding arithmetic."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..tensor import Parameter
from .activation import ReLU
from .batchnorm import BatchNorm1d, BatchNorm2d
from .conv import Conv2d, ConvRelu2d
from .conv_bn import ConvBn2d, ConvBnRelu2d
from .linear import Linear, LinearRelu
from .linear_bn import LinearBn1d, LinearBnRelu1d
from .misc import Identity
from .module import Module

__all__ = ["fold_weight_bias", "fuse_conv_bn_relu", "fuse_linear_bn_relu", "fuse_modules"]


def fold_weight_bias(weight: np.ndarray, bias: Optional[np.ndarray], gamma: Optional[np.ndarray],
                     beta: Optional[np.ndarray], mean: np.ndarray, var: np.ndarray, eps: float = 1e-5
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Fold eval-mode BN into the preceding conv/linear (output channel = axis 0 of ``weight``):
    ``W' = W·γ/sqrt(var+eps)``, ``b' = β + (b - mean)·γ/sqrt(var+eps)``."""
    o = weight.shape[0]
    g = np.ones(o) if gamma is None else gamma.reshape(o).astype(np.float64)
    k = g / np.sqrt(var.reshape(o).astype(np.float64) + eps)
    b = np.zeros(o) if bias is None else bias.reshape(o).astype(np.float64)
    beta_ = np.zeros(o) if beta is None else beta.reshape(o).astype(np.float64)
    w = weight.astype(np.float64) * k.reshape((o,) + (1,) * (weight.ndim - 1))
    return w.astype(weight.dtype), (beta_ + (b - mean.reshape(o)) * k).astype(weight.dtype)


def _as_type(src: Module, cls: type) -> Module:
    """An instance of ``cls`` (a subclass of type(src)) sharing ``src``'s attributes and parameters."""
    m = cls.__new__(cls)
    m.__dict__.update(src.__dict__)
    return m


def _check_relu(relu: Optional[Module]) -> None:
    if relu is not None and not isinstance(relu, ReLU):
        raise TypeError(f"fuse: relu must be a ReLU module or None, got {type(relu).__name__}")


def fuse_conv_bn_relu(conv: Conv2d, bn: Optional[BatchNorm2d] = None, relu: Optional[ReLU] = None) -> Module:
    """Fuse ``conv`` [+ ``bn``] [+ ``relu``] (as MegEngine's ``fuse_conv_bn_relu_module``).

    With a BN and ``conv.training``: a ``ConvBn2d``/``ConvBnRelu2d`` sharing ``conv`` and ``bn`` (keep training it).
    With a BN in eval mode: BN folded into a new ``Conv2d``/``ConvRelu2d`` (running statistics). Without a BN:
    ``ConvRelu2d`` sharing ``conv``'s parameters (or ``conv`` itself if there is no ReLU either).
    """
    if type(conv) is not Conv2d:
        raise TypeError(f"fuse_conv_bn_relu: conv must be a Conv2d, got {type(conv).__name__}")
    if bn is not None and not isinstance(bn, BatchNorm2d):
        raise TypeError(f"fuse_conv_bn_relu: bn must be a BatchNorm2d or None, got {type(bn).__name__}")
    _check_relu(relu)
    if bn is None:
        return conv if relu is None else _as_type(conv, ConvRelu2d)
    if conv.training:
        return (ConvBn2d if relu is None else ConvBnRelu2d).from_modules(conv, bn)
    fused = _as_type(conv, ConvRelu2d if relu is not None else Conv2d)
    w, b = fold_weight_bias(conv.weight.numpy(), None if conv.bias is None else conv.bias.numpy(),
                            None if bn.weight is None else bn.weight.numpy(),
                            None if bn.bias is None else bn.bias.numpy(),
                            bn.running_mean.numpy(), bn.running_var.numpy(), bn.eps)
    fused.weight, fused.bias = Parameter(w), Parameter(b)
    return fused


def fuse_linear_bn_relu(linear: Linear, bn: Optional[BatchNorm1d] = None, relu: Optional[ReLU] = None) -> Module:
    """Like :func:`fuse_conv_bn_relu` for ``Linear`` + ``BatchNorm1d`` + ``ReLU``."""
    if type(linear) is not Linear:
        raise TypeError(f"fuse_linear_bn_relu: linear must be a Linear, got {type(linear).__name__}")
    if bn is not None and not isinstance(bn, BatchNorm1d):
        raise TypeError(f"fuse_linear_bn_relu: bn must be a BatchNorm1d or None, got {type(bn).__name__}")
    _check_relu(relu)
    if bn is None:
        return linear if relu is None else _as_type(linear, LinearRelu)
    if linear.training:
        return (LinearBn1d if relu is None else LinearBnRelu1d).from_modules(linear, bn)
    fused = _as_type(linear, LinearRelu if relu is not None else Linear)
    w, b = fold_weight_bias(linear.weight.numpy(), None if linear.bias is None else linear.bias.numpy(),
                            None if bn.weight is None else bn.weight.numpy(),
                            None if bn.bias is None else bn.bias.numpy(),
                            bn.running_mean.numpy(), bn.running_var.numpy(), bn.eps)
    fused.weight, fused.bias = Parameter(w), Parameter(b)
    return fused


def _resolve(model: Module, path: str) -> Tuple[Module, str, Module]:
    parent = model
    parts = path.split(".")
    for p in parts[:-1]:
        parent = getattr(parent, p, None)
    child = getattr(parent, parts[-1], None)
    if not isinstance(child, Module):
        raise KeyError(f"fuse_modules: no sub-module named {path!r}")
    return parent, parts[-1], child


def fuse_modules(model: Module, groups: Sequence[Sequence[str]]) -> Module:
    """Fuse named groups in place, e.g. ``fuse_modules(net, [["conv1", "bn1", "relu1"], ["fc", "relu2"]])``.

    Each group is a conv or linear followed by an optional BN and an optional ReLU. The first name gets the fused
    module; the others become ``Identity``. Returns ``model``.
    """
    for group in groups:
        if not group:
            raise ValueError("fuse_modules: empty group")
        found: List[Tuple[Module, str, Module]] = [_resolve(model, p) for p in group]
        mods = [m for _, _, m in found]
        head, rest = mods[0], mods[1:]
        bn = next((m for m in rest if isinstance(m, (BatchNorm1d, BatchNorm2d))), None)
        relu = next((m for m in rest if isinstance(m, ReLU)), None)
        if len(rest) != (bn is not None) + (relu is not None):
            raise TypeError(f"fuse_modules: group {list(group)} must be conv/linear [+ bn] [+ relu], got "
                            f"{[type(m).__name__ for m in mods]}")
        if type(head) is Conv2d:
            fused = fuse_conv_bn_relu(head, bn, relu)  # type: ignore[arg-type]
        elif type(head) is Linear:
            fused = fuse_linear_bn_relu(head, bn, relu)  # type: ignore[arg-type]
        else:
            raise TypeError(f"fuse_modules: group {list(group)} must start with a Conv2d or Linear, "
                            f"got {type(head).__name__}")
        parent, attr, _ = found[0]
        setattr(parent, attr, fused)
        for parent, attr, _ in found[1:]:
            setattr(parent, attr, Identity())
    return model
