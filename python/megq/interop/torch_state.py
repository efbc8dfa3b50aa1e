"""PyTorch / torchvision state_dicts into megq models.

Name rule (documented in docs/interop.md). Every parameter and buffer of the megq model has a dotted key
(``layer1.0.conv_bn_relu1.conv.weight``); its PyTorch key is found by replacing the longest *module path* prefix of
that key listed in ``mapping`` by the mapped PyTorch module path (``layer1.0.conv_bn_relu1.conv`` ->
``layer1.0.conv1``), the attribute name (``weight``, ``bias``, ``running_mean``, ``running_var``) staying as it is. A
key with no listed prefix keeps its own name. PyTorch's ``num_batches_tracked`` counters have no megq counterpart
and are ignored. The zoo (``megq.models``) carries torchvision's names through :func:`torchvision_mapping`.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from ..module.module import Module
from ..tensor import Tensor

__all__ = ["from_torch", "read_state_dict", "torchvision_mapping"]

StateSource = Union[Mapping[str, Any], str, "os.PathLike[str]"]
KeyMapping = Union[Mapping[str, str], Callable[[str], Optional[str]]]


# ---------------------------------------------------------------------------------------------------------------
# reading
def _to_numpy(key: str, value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Tensor):
        return np.asarray(value.numpy())
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor (torch imported by whoever made it)
        t = value.detach().cpu()
        if not t.dtype.is_floating_point or t.dtype.itemsize < 4:  # bfloat16/float16 have no numpy twin
            t = t.float() if t.dtype.is_floating_point else t
        return t.numpy()
    if isinstance(value, (int, float, bool, np.generic)):
        return np.asarray(value)
    raise TypeError(f"state_dict: value of {key!r} must be a torch tensor, numpy array or megq Tensor, "
                    f"got {type(value).__name__}")


def _read_file(path: str) -> Mapping[str, Any]:
    if not os.path.isfile(path):
        raise ValueError(f"state_dict: no such file {path!r}")
    if path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as e:
            raise ImportError("state_dict: reading a .safetensors file needs the 'safetensors' package "
                              "(pip install megq[interop])") from e
        try:
            return load_file(path)
        except Exception as e:  # safetensors raises its own error type for a damaged file
            raise ValueError(f"state_dict: {path!r} is not a readable safetensors file ({type(e).__name__}: {e})") \
                from None
    try:
        import torch
    except ImportError as e:
        raise ImportError("state_dict: reading a PyTorch checkpoint needs the 'torch' package "
                          "(pip install megq[interop])") from e
    try:
        # weights_only: a checkpoint is data, never code to run (torch's safe unpickler).
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, forbidden global...
        raise ValueError(f"state_dict: {path!r} is not a readable PyTorch checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None


def read_state_dict(source: StateSource) -> Dict[str, np.ndarray]:
    """``{key: numpy array}`` from a dict of torch tensors / numpy arrays, a ``.pth``/``.pt`` file
    (``torch.load(weights_only=True)``) or a ``.safetensors`` file.

    A checkpoint whose top level wraps the weights (``{"state_dict": {...}}`` or ``{"model": {...}}``) is unwrapped;
    a ``module.`` prefix on every key (``DataParallel``) is removed; ``num_batches_tracked`` entries are dropped.
    """
    if isinstance(source, (str, os.PathLike)):
        raw = _read_file(os.fspath(source))
    elif isinstance(source, Mapping):
        raw = source
    else:
        raise TypeError(f"state_dict: expected a dict or a file path, got {type(source).__name__}")
    if not isinstance(raw, Mapping):
        raise ValueError(f"state_dict: the file holds a {type(raw).__name__}, not a dict of tensors")
    for wrapper in ("state_dict", "model"):
        inner = raw.get(wrapper) if isinstance(raw.get(wrapper, None), Mapping) else None
        if inner is not None and all(not hasattr(v, "shape") for v in raw.values() if v is not inner):
            raw = inner
            break
    out: Dict[str, np.ndarray] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise TypeError(f"state_dict: keys must be strings, got {key!r}")
        if key.endswith("num_batches_tracked"):
            continue
        out[key] = _to_numpy(key, value)
    if out and all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    return out


# ---------------------------------------------------------------------------------------------------------------
# torchvision names of the zoo
def _fused(mapping: Dict[str, str], path: str, conv: str, bn: str) -> None:
    mapping[f"{path}.conv"] = conv
    mapping[f"{path}.bn"] = bn


def torchvision_mapping(model: Module) -> Dict[str, str]:
    """``{megq module path: torchvision module path}`` for a zoo model (``megq.models`` ResNets, CIFAR ResNets and
    MobileNetV2); CIFAR ResNets use the ImageNet ResNets' names (``conv1``/``bn1``/``layerN.i.convK``/
    ``downsample.0``/``downsample.1``/``fc``), as common PyTorch CIFAR code does. Empty for other models."""
    from .. import models
    from ..models.mobilenet_v2 import InvertedResidual

    mapping: Dict[str, str] = {}
    if isinstance(model, (models.ResNet, models.CifarResNet)):
        _fused(mapping, "conv_bn_relu1", "conv1", "bn1")
        for name, block in model.named_modules():
            if isinstance(block, (models.BasicBlock, models.Bottleneck)):
                fused = ([("conv_bn_relu1", 1), ("conv_bn2", 2)] if isinstance(block, models.BasicBlock)
                         else [("conv_bn_relu1", 1), ("conv_bn_relu2", 2), ("conv_bn3", 3)])
                for attr, k in fused:
                    _fused(mapping, f"{name}.{attr}", f"{name}.conv{k}", f"{name}.bn{k}")
                if hasattr(block.downsample, "conv"):
                    _fused(mapping, f"{name}.downsample", f"{name}.downsample.0", f"{name}.downsample.1")
    elif isinstance(model, models.MobileNetV2):
        for i, layer in enumerate(model.features):
            path = f"features.{i}"
            if isinstance(layer, InvertedResidual):
                # torchvision: activated convs are Conv2dNormActivation (conv .0, bn .1); the linear projection is
                # a bare Conv2d at index j followed by its BatchNorm2d at j + 1.
                for j in range(len(layer.conv)):
                    if j < len(layer.conv) - 1:
                        _fused(mapping, f"{path}.conv.{j}", f"{path}.conv.{j}.0", f"{path}.conv.{j}.1")
                    else:
                        _fused(mapping, f"{path}.conv.{j}", f"{path}.conv.{j}", f"{path}.conv.{j + 1}")
            else:
                _fused(mapping, path, f"{path}.0", f"{path}.1")
    return mapping


# ---------------------------------------------------------------------------------------------------------------
# loading
def _translator(mapping: KeyMapping) -> Callable[[str], Optional[str]]:
    if callable(mapping):
        return mapping
    if not isinstance(mapping, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in mapping.items()):
        raise TypeError("mapping: expected a dict {megq module path: torch module path} or a callable "
                        "megq_key -> torch_key")

    def translate(key: str) -> str:
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in mapping:
                target = mapping[prefix]
                return ".".join(([target] if target else []) + parts[cut:])
        return key

    return translate


def from_torch(model: Module, state_dict: StateSource, strict: bool = True,
               mapping: Optional[KeyMapping] = None) -> Module:
    """Load a PyTorch / torchvision ``state_dict`` into the megq float ``model`` and return ``model``.

    ``state_dict``: a dict of torch tensors or numpy arrays, a ``.pth`` path (read with
    ``torch.load(weights_only=True)``) or a ``.safetensors`` path. ``mapping``: ``{megq module path: torch module
    path}`` (longest prefix wins, see the module docstring) or a callable ``megq_key -> torch_key``; by default the
    zoo's torchvision names (:func:`torchvision_mapping`), the identity for other models.

    With ``strict`` every missing, unexpected or shape-mismatched key is reported by name in one ``ValueError`` and
    nothing is loaded; without it, keys present on both sides are loaded and the others ignored (a shape mismatch
    still raises). Values are cast to the parameters' dtype (float32).
    """
    if not isinstance(model, Module):
        raise TypeError(f"model: expected a megq Module, got {type(model).__name__}")
    if not isinstance(strict, bool):
        raise TypeError(f"strict: expected a bool, got {type(strict).__name__}")
    sd = read_state_dict(state_dict)
    translate = _translator(torchvision_mapping(model) if mapping is None else mapping)
    own = model._state_tensors()
    pairs: List[Tuple[str, str, Tensor]] = []
    missing: List[str] = []
    for key, tensor in own.items():
        tkey = translate(key)
        if tkey is None or tkey not in sd:
            missing.append(key if tkey in (None, key) else f"{key} (torch key {tkey!r})")
        else:
            pairs.append((key, tkey, tensor))
    used = {t for _, t, _ in pairs}
    unexpected = [k for k in sd if k not in used]
    mismatched = [f"{key} (torch key {tkey!r}): megq {tuple(t.shape)}, torch {tuple(sd[tkey].shape)}"
                  for key, tkey, t in pairs if tuple(sd[tkey].shape) != tuple(t.shape)]
    problems = []
    if strict and missing:
        problems.append(f"{len(missing)} missing: " + ", ".join(missing))
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected: " + ", ".join(unexpected))
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch: " + ", ".join(mismatched))
    if problems:
        raise ValueError(f"from_torch: the state_dict does not fit this {type(model).__name__} (wrong architecture, "
                         f"number of classes or mapping?); " + "; ".join(problems))
    for _, tkey, tensor in pairs:
        tensor.set_value(np.array(sd[tkey], dtype=tensor.dtype))
    return model
