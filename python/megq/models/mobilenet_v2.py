"""MobileNetV2 (Sandler et al. 2018) with torchvision's architecture (``torchvision.models.mobilenetv2``: ReLU6
after every expansion and depthwise conv, linear projections, residual adds, Dropout(0.2) + Linear classifier),
written for quantization in MegEngine's style: fused ``ConvBnRelu62d`` / ``ConvBn2d``, ``Elemwise("ADD")``
residuals, QuantStub/DequantStub. torchvision's checkpoints load with ``megq.interop.from_torch``.

In a Q model ReLU6 is the clamp bound of its conv (see ``megq.functional.quantized.activation_bounds``). The
classifier is quantized by default (``quantize_classifier=True``); ``False`` keeps it float behind the DequantStub,
as MegEngine's example does."""
from __future__ import annotations

from typing import Optional, Sequence

from .. import functional as F
from .. import module as M
from ..module import init
from ..tensor import Tensor

__all__ = ["InvertedResidual", "MobileNetV2", "mobilenet_v2"]

_SETTING = [  # expansion t, channels c, repeats n, first stride s
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
]


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without going more than 10% below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class InvertedResidual(M.Module):
    """1x1 expand (if t != 1), 3x3 depthwise, 1x1 linear projection; residual add when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride}")
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = [M.ConvBnRelu62d(inp, hidden, 1, bias=False)] if expand_ratio != 1 else []
        layers += [M.ConvBnRelu62d(hidden, hidden, 3, stride, padding=1, groups=hidden, bias=False),
                   M.ConvBn2d(hidden, oup, 1, bias=False)]
        self.conv = M.Sequential(*layers)
        # Only blocks with a residual own an add: an unused module would have no calibrated scale.
        self.add = M.Elemwise("ADD") if self.use_res_connect else None

    def forward(self, x: Tensor) -> Tensor:
        return self.add(x, self.conv(x)) if self.use_res_connect else self.conv(x)


class MobileNetV2(M.Module):
    """MobileNetV2; ``features`` (Sequential) -> global avg pool -> ``classifier`` (Dropout 0.2 + Linear)."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3,
                 inverted_residual_setting: Optional[Sequence[Sequence[int]]] = None,
                 quantize_classifier: bool = True) -> None:
        super().__init__()
        if not isinstance(quantize_classifier, bool):
            raise TypeError(f"quantize_classifier: expected a bool, got {type(quantize_classifier).__name__}")
        setting = list(inverted_residual_setting or _SETTING)
        if not setting or any(len(s) != 4 for s in setting):
            raise ValueError(f"MobileNetV2: inverted_residual_setting must be a non-empty list of (t, c, n, s), "
                             f"got {setting}")
        c_in = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features = [M.ConvBnRelu62d(in_channels, c_in, 3, 2, padding=1, bias=False)]
        for t, c, n, s in setting:
            c_out = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(c_in, c_out, s if i == 0 else 1, t))
                c_in = c_out
        features.append(M.ConvBnRelu62d(c_in, self.last_channel, 1, bias=False))
        self.features = M.Sequential(*features)
        self.classifier = M.Sequential(M.Dropout(0.2), M.Linear(self.last_channel, num_classes))
        self.quantize_classifier = quantize_classifier
        if not quantize_classifier:
            self.classifier.disable_quantize()
        self.quant = M.QuantStub()
        self.dequant = M.DequantStub()
        for m in self.modules():
            if isinstance(m, M.Conv2d):
                init.msra_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    init.zeros_(m.bias)
            elif isinstance(m, M.BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)
            elif isinstance(m, M.Linear):
                init.normal_(m.weight, 0, 0.01)
                init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(self.quant(x))
        x = F.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        if self.quantize_classifier:
            return self.dequant(self.classifier(x))
        return self.classifier(self.dequant(x))


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3,
                 quantize_classifier: bool = True) -> MobileNetV2:
    """MobileNetV2 (3,504,872 parameters with 1000 classes, width 1.0), torchvision's architecture."""
    return MobileNetV2(num_classes, width_mult, in_channels, quantize_classifier=quantize_classifier)
