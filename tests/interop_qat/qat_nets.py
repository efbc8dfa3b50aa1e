"""torchvision-layout ResNets in plain torch.nn for the torch QAT tests (torchvision's names: conv1, bn1, relu,
[maxpool], layerN.i.{conv1,bn1,conv2,bn2,downsample.0,downsample.1}, fc), a torchvision-layout MobileNetV2
(features.0 = Conv2dNormActivation, features.i.conv = [expand], depthwise, Conv2d, BatchNorm2d, classifier =
Dropout + Linear), and helpers shared by the tests."""
import numpy as np
import torch
import torch.nn as nn

import megq
from megq.qtensor import QuantizedTensor


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # stride on the 3x3 (torchvision v1.5)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """``imagenet=False``: CIFAR stem (3x3, 16 channels, no max pool), stages 16/32/64; True: torchvision's
    ImageNet ResNet-18 layout (7x7/2 stem, 3x3/2 max pool, stages 64..512)."""

    def __init__(self, blocks=1, num_classes=10, in_channels=1, imagenet=False, bottleneck=False):
        super().__init__()
        block = Bottleneck if bottleneck else BasicBlock
        widths = [64, 128, 256, 512] if imagenet else [16, 32, 64]
        c = widths[0]
        if imagenet:
            self.conv1 = nn.Conv2d(in_channels, c, 7, 2, 3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        if imagenet:
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            layer = []
            for _ in range(blocks):
                ds, out = None, w * (4 if bottleneck else 1)
                if stride != 1 or c != out:
                    ds = nn.Sequential(nn.Conv2d(c, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                layer.append(block(c, w, stride, ds))
                c, stride = out, 1
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.fc = nn.Linear(c, num_classes)
        self.imagenet = imagenet

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        if self.imagenet:
            x = self.maxpool(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.imagenet:
            x = self.layer4(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _conv_norm_act(inp, oup, kernel=3, stride=1, groups=1):
    """torchvision's Conv2dNormActivation with ReLU6."""
    return nn.Sequential(nn.Conv2d(inp, oup, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.stride = stride
        self.use_res_connect = stride == 1 and inp == oup
        layers = [_conv_norm_act(inp, hidden, 1)] if expand_ratio != 1 else []
        layers += [_conv_norm_act(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, oup, 1, bias=False),
                   nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (``torchvision.models.mobilenetv2``) with a settable (t, c, n, s) table."""

    SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1)]

    def __init__(self, num_classes=10, width_mult=1.0, in_channels=3, setting=None):
        super().__init__()
        c = _divisible(32 * width_mult)
        last = _divisible(1280 * max(1.0, width_mult))
        features = [_conv_norm_act(in_channels, c, stride=2)]
        for t, ch, n, s in setting or self.SETTING:
            out = _divisible(ch * width_mult)
            for i in range(n):
                features.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        features.append(_conv_norm_act(c, last, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)
        return self.classifier(x)


def batches(n, shape, seed, num_classes=10):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(shape, generator=g), torch.randint(0, num_classes, (shape[0],), generator=g))
            for _ in range(n)]


def train(qat, data, lr=0.05):
    opt = torch.optim.SGD(qat.parameters(), lr=lr, momentum=0.9)
    qat.train()
    losses = []
    for x, y in data:
        loss = nn.functional.cross_entropy(qat(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def torch_layer_outputs(qat, names, x):
    """{layer name: (values as float32 NCHW numpy, scale or None)} of one forward; integer layers give q."""
    from megq.interop.torch_qat.modules import QT

    out, handles = {}, []
    mods = dict(qat.named_modules())
    for name in names:
        def hook(m, args, y, name=name):
            if isinstance(y, QT):
                out[name] = (y.q.detach().cpu().numpy(), float(y.scale))
            else:
                out[name] = (y.detach().cpu().numpy(), None)
        handles.append(mods[name].register_forward_hook(hook))
    with torch.no_grad():
        final = qat(x)
    for h in handles:
        h.remove()
    return out, (final if isinstance(final, torch.Tensor) else final.dequantize()).detach().cpu().numpy()


def megq_layer_outputs(model, names, x):
    """Same for a megq QFloat or Q model (QuantizedTensor storage NHWC -> NCHW)."""
    out, handles = {}, []
    mods = dict(model.named_modules())
    for name in names:
        def hook(m, args, y, name=name):
            if isinstance(y, QuantizedTensor):
                d = y.data.astype(np.float32)
                out[name] = (d.transpose(0, 3, 1, 2) if d.ndim == 4 else d, float(y.scale))
            else:
                out[name] = (np.asarray(y.numpy(), np.float32), None)
        handles.append(mods[name].register_forward_hook(hook))
    final = model(megq.Tensor(x.numpy()))
    for h in handles:
        h.remove()
    return out, np.asarray(final.numpy(), np.float32)
