"""megq.models: quantization-ready ResNets and MobileNetV2 built from megq.module's fused modules."""
from .mobilenet_v2 import MobileNetV2, mobilenet_v2
from .resnet import BasicBlock, Bottleneck, CifarResNet, ResNet, resnet8, resnet18, resnet20, resnet34, resnet50

__all__ = ["BasicBlock", "Bottleneck", "CifarResNet", "MobileNetV2", "ResNet", "mobilenet_v2", "resnet8",
           "resnet18", "resnet20", "resnet34", "resnet50"]
