"""ResNets written for quantization as in MegEngine's official example
(https://github.com/MegEngine/Models, ``official/quantization/models/resnet.py``):
fused ConvBnRelu2d/ConvBn2d, ``Elemwise("FUSE_ADD_RELU")`` residual joins, QuantStub/DequantStub. The architecture
is torchvision's (``torchvision.models.resnet``, v1.5: stride on the 3x3 conv of a Bottleneck), so torchvision's
checkpoints load with ``megq.interop.from_torch``. Global pooling is adaptive so any input size works.

The classifier ``fc`` is quantized by default (``quantize_classifier=True``: the DequantStub follows ``fc``, so a Q
model is int8 from input to logits and its file holds int8 classifier weights); ``quantize_classifier=False`` keeps
it float behind the DequantStub, as MegEngine's example does.

ImageNet models (``resnet18/34/50``): 7x7/2 stem + 3x3/2 max pool. CIFAR-style models (``resnet8/20``): 3x3 stem,
no max pool, three stages of 16/32/64 channels, 1x1 ConvBn2d projection shortcuts.
"""
from __future__ import annotations

from typing import Sequence, Type, Union

from .. import functional as F
from .. import module as M
from ..tensor import Tensor
from ._init import init_resnet_weights

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "CifarResNet", "resnet18", "resnet34", "resnet50", "resnet8",
           "resnet20"]


class BasicBlock(M.Module):
    """Two 3x3 convs; ``add(conv_bn2(conv_bn_relu1(x)), downsample(x))`` with a fused add+ReLU."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv_bn_relu1 = M.ConvBnRelu2d(in_channels, channels, 3, stride, padding=1, bias=False)
        self.conv_bn2 = M.ConvBn2d(channels, channels, 3, 1, padding=1, bias=False)
        self.downsample = (M.Identity() if in_channels == channels and stride == 1
                           else M.ConvBn2d(in_channels, channels, 1, stride, bias=False))
        self.add = M.Elemwise("FUSE_ADD_RELU")

    def forward(self, x: Tensor) -> Tensor:
        return self.add(self.conv_bn2(self.conv_bn_relu1(x)), self.downsample(x))


class Bottleneck(M.Module):
    """1x1 reduce, 3x3 (stride here, as torchvision v1.5), 1x1 expand (x4); fused add+ReLU."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out = channels * self.expansion
        self.conv_bn_relu1 = M.ConvBnRelu2d(in_channels, channels, 1, 1, bias=False)
        self.conv_bn_relu2 = M.ConvBnRelu2d(channels, channels, 3, stride, padding=1, bias=False)
        self.conv_bn3 = M.ConvBn2d(channels, out, 1, 1, bias=False)
        self.downsample = (M.Identity() if in_channels == out and stride == 1
                           else M.ConvBn2d(in_channels, out, 1, stride, bias=False))
        self.add = M.Elemwise("FUSE_ADD_RELU")

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv_bn3(self.conv_bn_relu2(self.conv_bn_relu1(x)))
        return self.add(y, self.downsample(x))


Block = Union[Type[BasicBlock], Type[Bottleneck]]


def _make_layer(block: Block, in_channels: int, channels: int, blocks: int, stride: int) -> M.Sequential:
    layers = [block(in_channels, channels, stride)]
    layers += [block(channels * block.expansion, channels) for _ in range(1, blocks)]
    return M.Sequential(*layers)


class ResNet(M.Module):
    """ImageNet ResNet (quant-friendly). ``forward``: quant -> stem -> maxpool -> layer1..4 -> global avg pool ->
    flatten -> fc -> dequant (``quantize_classifier=False``: ... -> dequant -> float fc)."""

    def __init__(self, block: Block, layers: Sequence[int], num_classes: int = 1000, in_channels: int = 3,
                 quantize_classifier: bool = True) -> None:
        super().__init__()
        self.quant = M.QuantStub()
        self.dequant = M.DequantStub()
        self.conv_bn_relu1 = M.ConvBnRelu2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.maxpool = M.MaxPool2d(3, 2, 1)
        widths = [64, 128, 256, 512]
        c_in = 64
        for i, (w, n) in enumerate(zip(widths, layers)):
            setattr(self, f"layer{i + 1}", _make_layer(block, c_in, w, n, 1 if i == 0 else 2))
            c_in = w * block.expansion
        self.fc = M.Linear(c_in, num_classes)
        init_resnet_weights(self)
        _classifier(self, quantize_classifier)

    def extract_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv_bn_relu1(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        x = self.extract_features(self.quant(x))
        return _head(self, F.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class CifarResNet(M.Module):
    """CIFAR-style ResNet (He et al. 2016, §4.2) with projection shortcuts: 3x3 stem, stages of 16/32/64
    channels with ``depth`` basic blocks each, global avg pool, fc."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_channels: int = 3,
                 quantize_classifier: bool = True) -> None:
        super().__init__()
        self.quant = M.QuantStub()
        self.dequant = M.DequantStub()
        self.conv_bn_relu1 = M.ConvBnRelu2d(in_channels, 16, 3, 1, padding=1, bias=False)
        self.layer1 = _make_layer(BasicBlock, 16, 16, blocks_per_stage, 1)
        self.layer2 = _make_layer(BasicBlock, 16, 32, blocks_per_stage, 2)
        self.layer3 = _make_layer(BasicBlock, 32, 64, blocks_per_stage, 2)
        self.fc = M.Linear(64, num_classes)
        init_resnet_weights(self)
        _classifier(self, quantize_classifier)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_bn_relu1(self.quant(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return _head(self, F.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _classifier(model: M.Module, quantize: bool) -> None:
    if not isinstance(quantize, bool):
        raise TypeError(f"quantize_classifier: expected a bool, got {type(quantize).__name__}")
    model.quantize_classifier = quantize
    if not quantize:
        model.fc.disable_quantize()  # MegEngine's example: the classifier stays float


def _head(model: M.Module, x: Tensor) -> Tensor:
    """The classifier inside the quantized region (then dequantized) or behind the DequantStub (float)."""
    if model.quantize_classifier:
        return model.dequant(model.fc(x))
    return model.fc(model.dequant(x))


def resnet18(num_classes: int = 1000, in_channels: int = 3, quantize_classifier: bool = True) -> ResNet:
    """ResNet-18 (11,689,512 parameters with 1000 classes), torchvision's architecture."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, quantize_classifier)


def resnet34(num_classes: int = 1000, in_channels: int = 3, quantize_classifier: bool = True) -> ResNet:
    """ResNet-34 (21,797,672 parameters with 1000 classes), torchvision's architecture."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, quantize_classifier)


def resnet50(num_classes: int = 1000, in_channels: int = 3, quantize_classifier: bool = True) -> ResNet:
    """ResNet-50 (25,557,032 parameters with 1000 classes), torchvision's architecture."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, quantize_classifier)


def resnet8(num_classes: int = 10, in_channels: int = 3, quantize_classifier: bool = True) -> CifarResNet:
    """CIFAR ResNet-8: one basic block per stage (77,754 parameters with in_channels=1, 10 classes)."""
    return CifarResNet(1, num_classes, in_channels, quantize_classifier)


def resnet20(num_classes: int = 10, in_channels: int = 3, quantize_classifier: bool = True) -> CifarResNet:
    """CIFAR ResNet-20: three basic blocks per stage."""
    return CifarResNet(3, num_classes, in_channels, quantize_classifier)
