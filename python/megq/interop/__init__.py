"""megq.interop: models in from PyTorch and ONNX, Q models out to ONNX.

* :func:`from_torch` loads a PyTorch / torchvision ``state_dict`` (dict, ``.pth`` or ``.safetensors`` file) into a
  megq model: torchvision's names for the zoo (``megq.models``), a module-path rule with a ``mapping`` argument for
  other models.
* :func:`export_onnx` writes a float, QFloat or Q model as ONNX (a Q model as its int8 QDQ graph, which ONNX
  Runtime runs on its int8 kernels and which reproduces megq's int8 values except for exact .5 ties).
* :func:`from_onnx` turns an ONNX float CNN into a megq float Module tree ready for ``quantize_qat``.

Only optional packages are used (torch for ``.pth`` files, safetensors for ``.safetensors`` files, onnx for
export/import); each is imported when the function that needs it runs. See docs/interop.md.
"""
from __future__ import annotations

from . import torch_qat  # noqa: F401  (prepare_qat / to_megq; imports torch only when called)
from .onnx_export import OPSET, export_onnx
from .onnx_import import OnnxModel, from_onnx
from .torch_state import from_torch, read_state_dict, torchvision_mapping

__all__ = ["OPSET", "OnnxModel", "export_onnx", "from_onnx", "from_torch", "read_state_dict",
           "torchvision_mapping"]
