"""``Module``: the base class of every float, QAT and quantized module.

Children, parameters and buffers are discovered from instance attributes in assignment order (MegEngine/PyTorch
style): a ``Parameter`` attribute is a parameter, any other ``Tensor`` attribute is a buffer (e.g. BN running
stats), a ``Module`` attribute (or a list/tuple of modules, named ``attr.i``) is a child. ``state_dict`` keys are
the dotted attribute paths, e.g. ``layer1.0.conv_bn_relu1.bn.running_mean``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..tensor import Parameter, Tensor

__all__ = ["Module", "HookHandle", "tree_version"]

# Bumped by every attribute assignment on a module and every hook registration or removal, so a cache derived
# from a module tree (megq.module.quantized.plan) can tell in one comparison that no tree changed since it was made.
_tree_version = [0]


def tree_version() -> int:
    """A number that changes whenever an attribute of any module is assigned or a hook is added or removed."""
    return _tree_version[0]


class HookHandle:
    """Returned by ``register_forward_hook``; ``remove()`` unregisters the hook."""

    def __init__(self, hooks: Dict[int, Callable], key: int) -> None:
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)
        _tree_version[0] += 1


class Module:
    """Base class. Subclasses call ``super().__init__()`` first and implement ``forward``.

    ``module(*args)`` runs forward pre-hooks, ``forward``, then forward hooks.
    Attributes: ``training`` (set by ``train``/``eval``), ``quantize_disabled`` (set by ``disable_quantize``;
    ``quantize_qat`` skips such modules), ``name``.

    Class attributes:

    * ``fused_activation``: the activation a fused layer applies after itself (``"relu"`` for ConvRelu2d,
      ConvBnRelu2d, LinearRelu, LinearBnRelu1d and their QAT and quantized counterparts; ``None`` otherwise).
      Quantization reads it (a fused ReLU becomes the int8 clamp's lower bound), never the class name.
    * ``_transient_attrs``: names of instance attributes that are derived caches, rebuilt on demand (e.g. a
      quantized layer's kernels prepared for the CPU it runs on); serialization does not store them.
    """

    fused_activation: Optional[str] = None
    _transient_attrs: Tuple[str, ...] = ()
    # Set on the float layers ``quantize()`` leaves in a Q model: their forward runs with the BLAS limited to
    # megq.get_num_threads() (megq.functional._parallel.blas_threads_as_megq).
    _blas_threads_as_megq: bool = False

    def __init__(self, name: Optional[str] = None) -> None:
        self.training = True
        self.quantize_disabled = False
        self.name = name
        self._forward_hooks: Dict[int, Callable] = OrderedDict()
        self._forward_pre_hooks: Dict[int, Callable] = OrderedDict()
        self._hook_counter = 0

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        _tree_version[0] += 1

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        runner = self.__dict__.get("_plan_runner")
        if runner is not None:  # a Q model's execution plan (megq.module.quantized.plan); NotImplemented: not here
            out = runner.run(self, args, kwargs)
            if out is not NotImplemented:
                return out
        for hook in list(self._forward_pre_hooks.values()):
            res = hook(self, args)
            if res is not None:
                args = res if isinstance(res, tuple) else (res,)
        if self._blas_threads_as_megq:
            from ..functional._parallel import blas_threads_as_megq

            with blas_threads_as_megq():
                out = self.forward(*args, **kwargs)
        else:
            out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            res = hook(self, args, out)
            if res is not None:
                out = res
        return out

    # -- hooks --------------------------------------------------------------------------------------------------
    def register_forward_hook(self, hook: Callable[["Module", tuple, Any], Any]) -> HookHandle:
        """``hook(module, inputs, output)`` runs after forward; a non-None return replaces the output."""
        self._hook_counter += 1
        self._forward_hooks[self._hook_counter] = hook
        return HookHandle(self._forward_hooks, self._hook_counter)

    def register_forward_pre_hook(self, hook: Callable[["Module", tuple], Any]) -> HookHandle:
        """``hook(module, inputs)`` runs before forward; a non-None return replaces the inputs."""
        self._hook_counter += 1
        self._forward_pre_hooks[self._hook_counter] = hook
        return HookHandle(self._forward_pre_hooks, self._hook_counter)

    # -- tree traversal -----------------------------------------------------------------------------------------
    def _items(self) -> Iterator[Tuple[str, Any]]:
        for key, value in vars(self).items():
            if key.startswith("_"):
                continue
            if isinstance(value, (list, tuple)) and value and all(isinstance(v, Module) for v in value):
                for i, v in enumerate(value):
                    yield f"{key}.{i}", v
            else:
                yield key, value

    def named_children(self) -> Iterator[Tuple[str, "Module"]]:
        """Direct sub-modules with their attribute names."""
        for key, value in self._items():
            if isinstance(value, Module):
                yield key, value

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[Tuple[str, "Module"]]:
        """This module (name ``prefix``) and all descendants, depth first, each once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, mod = stack.pop()
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            yield name, mod
            kids = [(f"{name}.{k}" if name else k, m) for k, m in mod.named_children()]
            stack.extend(reversed(kids))

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def _named_tensors(self, want_param: bool, recursive: bool = True) -> Iterator[Tuple[str, Tensor]]:
        seen = set()
        mods = self.named_modules() if recursive else iter([("", self)])
        for mname, mod in mods:
            for key, value in mod._items():
                if isinstance(value, Tensor) and isinstance(value, Parameter) == want_param and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{mname}.{key}" if mname else key), value

    def named_parameters(self, recursive: bool = True, requires_grad: Optional[bool] = None
                         ) -> Iterator[Tuple[str, Parameter]]:
        """``(dotted_name, Parameter)`` pairs; shared parameters appear once.

        ``requires_grad`` is accepted for MegEngine scripts (``model.parameters(requires_grad=True)``) and ignored,
        as MegEngine ignores it: every Parameter of a module is trainable (a GradManager decides what gets
        gradients)."""
        if requires_grad is not None and not isinstance(requires_grad, bool):
            raise TypeError(f"requires_grad: expected a bool or None, got {requires_grad!r}")
        return self._named_tensors(True, recursive)  # type: ignore[return-value]

    def parameters(self, recursive: bool = True, requires_grad: Optional[bool] = None) -> Iterator[Parameter]:
        """The module's Parameters (see :meth:`named_parameters`)."""
        for _, p in self.named_parameters(recursive, requires_grad):
            yield p

    def named_buffers(self, recursive: bool = True) -> Iterator[Tuple[str, Tensor]]:
        """Non-parameter tensors (BN running statistics, observer state...)."""
        return self._named_tensors(False, recursive)

    def buffers(self, recursive: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recursive):
            yield b

    # -- modes --------------------------------------------------------------------------------------------------
    def train(self, mode: bool = True, recursive: bool = True) -> "Module":
        """Set training mode (BN uses batch stats, dropout drops); ``recursive`` applies it to descendants."""
        for m in (self.modules() if recursive else [self]):
            m.training = mode
        return self

    def eval(self) -> "Module":
        """``train(False)``."""
        return self.train(False)

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        """Call ``fn`` on every module of the tree (this one included)."""
        for m in list(self.modules()):
            fn(m)
        return self

    def disable_quantize(self, value: bool = True) -> "Module":
        """Mark this module and its descendants so ``quantize_qat`` leaves them float."""
        for m in self.modules():
            m.quantize_disabled = value
        return self

    # -- state ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameters then buffers of each module, keyed by dotted name, as numpy copies."""
        out: "OrderedDict[str, np.ndarray]" = OrderedDict()
        seen = set()
        for mname, mod in self.named_modules():
            for key, value in mod._items():
                if isinstance(value, Tensor) and id(value) not in seen:
                    seen.add(id(value))
                    out[f"{mname}.{key}" if mname else key] = np.array(value.numpy())
        return out

    def _state_tensors(self) -> "OrderedDict[str, Tensor]":
        out: "OrderedDict[str, Tensor]" = OrderedDict()
        seen = set()
        for mname, mod in self.named_modules():
            for key, value in mod._items():
                if isinstance(value, Tensor) and id(value) not in seen:
                    seen.add(id(value))
                    out[f"{mname}.{key}" if mname else key] = value
        return out

    def load_state_dict(self, state_dict: Dict[str, Any], strict: bool = True) -> Tuple[List[str], List[str]]:
        """Copy values into this tree's parameters and buffers (keeping their dtypes and identities).

        ``strict=True`` raises ``KeyError`` listing missing and unexpected keys; ``strict=False`` loads the common
        keys and returns ``(missing, unexpected)``. A shape mismatch always raises ``ValueError`` naming the key.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"load_state_dict: state_dict must be a dict, got {type(state_dict).__name__}")
        own = self._state_tensors()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for key, tensor in own.items():
            if key not in state_dict:
                continue
            value = np.asarray(state_dict[key].numpy() if isinstance(state_dict[key], Tensor) else state_dict[key])
            if value.shape != tensor.shape:
                raise ValueError(f"load_state_dict: shape mismatch for '{key}': expected {tensor.shape}, "
                                 f"got {value.shape}")
        for key, tensor in own.items():
            if key in state_dict:
                v = state_dict[key]
                tensor.set_value(np.array(v.numpy() if isinstance(v, Tensor) else v, dtype=tensor.dtype))
        return missing, unexpected

    # -- display -------------------------------------------------------------------------------------------------
    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        kids = list(self.named_children())
        head = f"{type(self).__name__}({self._extra_repr()}"
        if not kids:
            return head + ")"
        lines = [head]
        for k, m in kids:
            lines.append("  " + f"({k}): {m!r}".replace("\n", "\n  "))
        return "\n".join(lines) + "\n)"
