"""``prepare_qat`` (a torchvision-layout torch ResNet or MobileNetV2 -> torch QAT model with megq's numerics) and
``to_megq`` (torch QAT model -> megq QFloat model carrying its weights, BN statistics and observer state)."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from ... import models as megq_models
from ...module.module import Module as MegqModule
from ...quantization import fake_quant as megq_fq
from ...quantization import observer as megq_obs
from ...quantization.qconfig import PRESETS, QConfig
from ...quantization.quantize import quantize_qat
from ...quantization.utils import QuantMode
from .modules import Add, ConvBn, DequantStub, Dropout, Linear, MaxPool, QATModule, QuantStub, global_pool_flatten
from .numerics import FakeQuantize, Observer

__all__ = ["prepare_qat", "to_megq", "TorchQATResNet", "TorchQATMobileNetV2", "torch_factories"]


# ---------------------------------------------------------------------------------------------------------------
# qconfig: megq presets -> torch observers / fake quants
def _resolve_qconfig(qconfig: Union[str, QConfig]) -> Tuple[str, QConfig]:
    if isinstance(qconfig, str):
        if qconfig not in PRESETS:
            raise ValueError(f"qconfig: unknown preset {qconfig!r}; megq's presets are {sorted(PRESETS)}")
        return qconfig, PRESETS[qconfig]
    if isinstance(qconfig, QConfig):
        return "", qconfig
    raise TypeError(f"qconfig: expected a megq preset name or a megq QConfig, got {type(qconfig).__name__}")


def _torch_observer(obj: Any, sync: bool, channels: Optional[int]) -> Observer:
    if isinstance(obj, (megq_obs.HistogramObserver, megq_obs.PassiveObserver)):
        raise ValueError(f"qconfig: {type(obj).__name__} has no torch counterpart; torch QAT supports MinMax, EMA and "
                         "per-channel MinMax/EMA observers (use an *_fakequant_qconfig* preset)")
    if not isinstance(obj, megq_obs.MinMaxObserver):
        raise ValueError(f"qconfig: unsupported observer {type(obj).__name__}")
    momentum = float(obj.momentum.numpy()) if isinstance(obj, megq_obs.ExponentialMovingAverageObserver) else None
    per_channel = hasattr(obj, "init_channels")
    return Observer(obj.dtype.name, obj.mode == QuantMode.SYMMERTIC, obj.scale_limit, momentum, per_channel,
                    channels if per_channel else None, sync)


def torch_factories(qconfig: Union[str, QConfig], sync: bool = True) -> Callable[..., Any]:
    """``make(kind, channels=None)`` building the torch twin of ``qconfig``'s factory ``kind``."""
    _, qc = _resolve_qconfig(qconfig)
    for kind in ("weight_fake_quant", "act_fake_quant", "weight_observer", "act_observer"):
        factory = getattr(qc, kind)
        if factory is None:
            raise ValueError(f"qconfig: {kind} is None; torch QAT needs observer + FakeQuantize presets "
                             "(e.g. 'ema_fakequant_qconfig')")
        obj = factory()
        if "fake_quant" in kind and type(obj) is not megq_fq.FakeQuantize:
            raise ValueError(f"qconfig: {kind} is {type(obj).__name__}; torch QAT supports FakeQuantize only "
                             "(TQT/LSQ are not ported)")

    def make(kind: str, channels: Optional[int] = None) -> Any:
        obj = getattr(qc, kind)()
        if "fake_quant" in kind:
            return FakeQuantize(obj.dtype.name)
        return _torch_observer(obj, sync, channels)

    return make


# ---------------------------------------------------------------------------------------------------------------
# the model
def _set_qconfig(model: torch.nn.Module, make: Callable[..., Any], qconfig: QConfig, qconfig_name: str) -> None:
    """Give every QAT module of ``model`` its observers / fake quants (per-channel ones sized from the weight)."""
    model.qconfig = qconfig
    model.qconfig_name = qconfig_name
    for m in model.modules():
        if isinstance(m, QATModule):
            channels = None
            if isinstance(m, ConvBn):
                channels = m.conv.out_channels
            elif isinstance(m, Linear):
                channels = m.weight.shape[0]
            m.set_qconfig(make, channels)


class _Block(torch.nn.Module):
    def __init__(self, src: torch.nn.Module) -> None:
        super().__init__()
        self.bottleneck = hasattr(src, "conv3")
        self.conv_bn_relu1 = ConvBn(src.conv1, src.bn1, "relu")
        if self.bottleneck:
            self.conv_bn_relu2 = ConvBn(src.conv2, src.bn2, "relu")
            self.conv_bn3 = ConvBn(src.conv3, src.bn3, None)
        else:
            self.conv_bn2 = ConvBn(src.conv2, src.bn2, None)
        ds = getattr(src, "downsample", None)
        if ds is None:
            self.downsample: torch.nn.Module = torch.nn.Identity()
        else:
            parts = list(ds.children()) if isinstance(ds, torch.nn.Sequential) else []
            if len(parts) != 2 or not isinstance(parts[0], torch.nn.Conv2d) or \
                    not isinstance(parts[1], torch.nn.BatchNorm2d):
                raise ValueError("prepare_qat: a block's downsample must be Sequential(Conv2d, BatchNorm2d) or None")
            self.downsample = ConvBn(parts[0], parts[1], None)
        self.add = Add("FUSE_ADD_RELU")

    def forward(self, x: Any) -> Any:
        if self.bottleneck:
            y = self.conv_bn3(self.conv_bn_relu2(self.conv_bn_relu1(x)))
        else:
            y = self.conv_bn2(self.conv_bn_relu1(x))
        return self.add(y, self.downsample(x))


class TorchQATResNet(torch.nn.Module):
    """torch QAT ResNet laid out as megq's zoo ResNet (``quant``, ``conv_bn_relu1``, ``layerN.i.conv_bn_relu1``,
    ``conv_bn2``, ``downsample``, ``add``, ``fc``, ``dequant``), sharing the source model's parameters."""

    def __init__(self, src: torch.nn.Module, make: Callable[..., Any], qconfig: QConfig, qconfig_name: str) -> None:
        super().__init__()
        for attr in ("conv1", "bn1", "fc", "layer1"):
            if not hasattr(src, attr):
                raise ValueError(f"prepare_qat: expected a torchvision-layout ResNet (conv1, bn1, layer1.., fc) or "
                                 f"MobileNetV2 (features, classifier); {type(src).__name__} has no {attr!r}")
        if not isinstance(src.fc, torch.nn.Linear):
            raise ValueError("prepare_qat: fc must be a torch.nn.Linear")
        self.quant = QuantStub()
        self.conv_bn_relu1 = ConvBn(src.conv1, src.bn1, "relu")
        pool = getattr(src, "maxpool", None)
        if pool is not None and not isinstance(pool, torch.nn.MaxPool2d):
            raise ValueError("prepare_qat: maxpool must be a torch.nn.MaxPool2d")
        self.maxpool = MaxPool(pool) if pool is not None else None
        n = 0
        while hasattr(src, f"layer{n + 1}"):
            blocks = [_Block(b) for b in getattr(src, f"layer{n + 1}")]
            setattr(self, f"layer{n + 1}", torch.nn.Sequential(*blocks))
            n += 1
        self.num_stages = n
        self.fc = Linear(src.fc)
        self.dequant = DequantStub()
        _set_qconfig(self, make, qconfig, qconfig_name)

    def stage_sizes(self) -> List[int]:
        return [len(getattr(self, f"layer{i + 1}")) for i in range(self.num_stages)]

    def forward(self, x: torch.Tensor) -> Any:
        x = self.conv_bn_relu1(self.quant(x))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.dequant(self.fc(global_pool_flatten(x)))


def _conv_bn_act(seq: Any, where: str) -> ConvBn:
    """torchvision's ``Conv2dNormActivation`` (``Sequential(Conv2d, BatchNorm2d, ReLU6)``) -> a fused ReLU6 ConvBn."""
    parts = list(seq.children()) if isinstance(seq, torch.nn.Sequential) else []
    if len(parts) != 3 or not isinstance(parts[0], torch.nn.Conv2d) or not isinstance(parts[1], torch.nn.BatchNorm2d) \
            or not _is_relu6(parts[2]):
        raise ValueError(f"prepare_qat: {where} must be Sequential(Conv2d, BatchNorm2d, ReLU6) (torchvision's "
                         "Conv2dNormActivation), as megq's MobileNetV2 fuses it into ConvBnRelu62d")
    return ConvBn(parts[0], parts[1], "relu6")


def _is_relu6(m: torch.nn.Module) -> bool:
    return isinstance(m, torch.nn.ReLU6) or (isinstance(m, torch.nn.Hardtanh) and m.min_val == 0.0 and
                                             m.max_val == 6.0)


class _InvertedResidual(torch.nn.Module):
    """megq's ``InvertedResidual``: ``conv`` = [expand ConvBnRelu6] + depthwise ConvBnRelu6 + linear ConvBn, and
    ``add`` (``Elemwise("ADD")``, no ReLU) when the block keeps its shape."""

    def __init__(self, src: torch.nn.Module, where: str) -> None:
        super().__init__()
        parts = list(src.conv.children()) if isinstance(getattr(src, "conv", None), torch.nn.Sequential) else []
        if len(parts) not in (3, 4) or not isinstance(parts[-2], torch.nn.Conv2d) or \
                not isinstance(parts[-1], torch.nn.BatchNorm2d):
            raise ValueError(f"prepare_qat: {where}.conv must be torchvision's InvertedResidual body "
                             "([expand], depthwise, Conv2d, BatchNorm2d)")
        fused = [_conv_bn_act(p, f"{where}.conv.{j}") for j, p in enumerate(parts[:-2])]
        dw = fused[-1].conv
        if dw.groups != dw.in_channels or dw.groups != dw.out_channels:
            raise ValueError(f"prepare_qat: {where}: the last activated conv must be depthwise (groups = channels)")
        self.conv = torch.nn.Sequential(*fused, ConvBn(parts[-2], parts[-1], None))
        inp, oup = fused[0].conv.in_channels, parts[-2].out_channels
        stride = dw.stride[0]
        res = stride == 1 and inp == oup  # megq's (and torchvision's) rule: the megq model must have the same adds
        if bool(getattr(src, "use_res_connect", res)) != res:
            raise ValueError(f"prepare_qat: {where}.use_res_connect must be stride == 1 and inp == oup")
        self.add = Add("ADD") if res else None
        self.expand_ratio = dw.in_channels / inp if len(fused) == 2 else 1
        self.stride = stride

    def forward(self, x: Any) -> Any:
        return self.add(x, self.conv(x)) if self.add is not None else self.conv(x)


class TorchQATMobileNetV2(torch.nn.Module):
    """torch QAT MobileNetV2 laid out as megq's zoo MobileNetV2 (``quant``, ``features.0``, ``features.i.conv.j``,
    ``features.i.add``, ``classifier.1``, ``dequant``), sharing the source model's parameters."""

    def __init__(self, src: torch.nn.Module, make: Callable[..., Any], qconfig: QConfig, qconfig_name: str) -> None:
        super().__init__()
        feats = list(src.features.children()) if isinstance(getattr(src, "features", None), torch.nn.Sequential) \
            else []
        if len(feats) < 3:
            raise ValueError("prepare_qat: a MobileNetV2 needs features = Sequential(stem, InvertedResidual.., "
                             "last conv)")
        cls = list(src.classifier.children()) if isinstance(getattr(src, "classifier", None), torch.nn.Sequential) \
            else []
        if len(cls) != 2 or not isinstance(cls[0], torch.nn.Dropout) or not isinstance(cls[1], torch.nn.Linear):
            raise ValueError("prepare_qat: a MobileNetV2's classifier must be Sequential(Dropout, Linear)")
        layers: List[torch.nn.Module] = [_conv_bn_act(feats[0], "features.0")]
        layers += [_InvertedResidual(b, f"features.{i + 1}") for i, b in enumerate(feats[1:-1])]
        layers.append(_conv_bn_act(feats[-1], f"features.{len(feats) - 1}"))
        self.quant = QuantStub()
        self.features = torch.nn.Sequential(*layers)
        self.classifier = torch.nn.Sequential(Dropout(cls[0]), Linear(cls[1]))
        self.dequant = DequantStub()
        _set_qconfig(self, make, qconfig, qconfig_name)

    def forward(self, x: torch.Tensor) -> Any:
        x = global_pool_flatten(self.features(self.quant(x)))
        return self.dequant(self.classifier(x))


def prepare_qat(torch_model: torch.nn.Module, qconfig: Union[str, QConfig] = "ema_fakequant_qconfig",
                sync: bool = True) -> torch.nn.Module:
    """A torch QAT model with megq's fake quantization at the points where megq's ``quantize_qat`` puts it.

    ``torch_model``: a torchvision-layout ResNet (``conv1``/``bn1``/``relu``/[``maxpool``]/``layerN`` of
    BasicBlock or Bottleneck blocks with ``downsample`` ``Sequential(Conv2d, BatchNorm2d)`` or None / ``fc``), e.g.
    torchvision's ``resnet18`` or a CIFAR ResNet with the same names; or a torchvision-layout MobileNetV2
    (``features`` = Conv2dNormActivation stem, InvertedResidual blocks, 1x1 Conv2dNormActivation, all with ReLU6;
    ``classifier`` = ``Sequential(Dropout, Linear)``), e.g. torchvision's ``mobilenet_v2`` at any width. ReLU6 is
    fused into its conv as megq's ``ConvBnRelu62d`` (in integer eval: the clamp bound of megq's
    ``activation_bounds``). Its parameters are shared, not copied.
    ``qconfig``: a megq preset name (``"ema_fakequant_qconfig"``, ``"ema_fakequant_qconfig_per_channel_quint8"``
    ...) or a megq ``QConfig`` with MinMax/EMA (per-channel or not) observers and FakeQuantize fake quants.
    ``sync``: under ``torch.distributed`` every observer all-reduces its batch min/max before updating (MegEngine's
    Sync observers), keeping the ranks' statistics identical; ``False`` keeps each rank's own.

    The result trains like any torch module and can be wrapped in ``DistributedDataParallel``; :func:`to_megq`
    brings it back. ``train()``/``eval()`` enable/disable the observers (MegEngine).
    """
    if not isinstance(torch_model, torch.nn.Module):
        raise TypeError(f"torch_model: expected a torch.nn.Module, got {type(torch_model).__name__}")
    if not isinstance(sync, bool):
        raise TypeError(f"sync: expected a bool, got {type(sync).__name__}")
    name, qc = _resolve_qconfig(qconfig)
    make = torch_factories(qc, sync)
    if hasattr(torch_model, "features") and hasattr(torch_model, "classifier"):
        qat: torch.nn.Module = TorchQATMobileNetV2(torch_model, make, qc, name)
    else:
        qat = TorchQATResNet(torch_model, make, qc, name)
    # the megq model must exist for this architecture: fail now, not after training
    _megq_float_model(qat)
    param = next(torch_model.parameters(), None)
    if param is not None:
        qat.to(param.device)
    return qat.train(torch_model.training)


# ---------------------------------------------------------------------------------------------------------------
# back to megq
def _megq_mobilenet_v2(qat: TorchQATMobileNetV2) -> MegqModule:
    """megq's zoo MobileNetV2 with the torch model's channels: the width comes from the stem (or the last conv
    when it is wider than 1280) and every block becomes its own ``(t, c, 1, s)`` setting entry."""
    from ...models.mobilenet_v2 import MobileNetV2, _make_divisible

    stem, last = qat.features[0].conv, qat.features[-1].conv
    blocks = list(qat.features)[1:-1]
    for width in (stem.out_channels / 32, last.out_channels / 1280):
        if _make_divisible(32 * width) != stem.out_channels or \
                _make_divisible(1280 * max(1.0, width)) != last.out_channels:
            continue
        # megq scales each setting channel count c by the width and rounds it to a multiple of 8: c_out / width
        # comes back to c_out (torchvision's channels are multiples of 8); the shape check below is the proof
        setting = [(b.expand_ratio, b.conv[-1].conv.out_channels / width, 1, b.stride) for b in blocks]
        model = MobileNetV2(qat.classifier[1].weight.shape[0], width, stem.in_channels, setting)
        got = {n: tuple(m.conv.weight.shape) for n, m in model.named_modules()
               if hasattr(m, "conv") and hasattr(m.conv, "weight")}
        want = {n: tuple(m.conv.weight.shape) for n, m in qat.named_modules() if isinstance(m, ConvBn)}
        if got == want:
            return model
    raise ValueError(f"to_megq: no megq zoo MobileNetV2 has this layout (stem {stem.out_channels} channels, last "
                     f"conv {last.out_channels}, {len(blocks)} blocks); pass megq_model=")


def _megq_float_model(qat: torch.nn.Module) -> MegqModule:
    if isinstance(qat, TorchQATMobileNetV2):
        return _megq_mobilenet_v2(qat)
    conv = qat.conv_bn_relu1.conv
    in_ch, num_classes = conv.in_channels, qat.fc.weight.shape[0]
    sizes = qat.stage_sizes()
    first = qat.layer1[0]
    if qat.maxpool is None and len(sizes) == 3 and not first.bottleneck and conv.out_channels == 16 and \
            conv.kernel_size == (3, 3) and len(set(sizes)) == 1:
        return megq_models.CifarResNet(sizes[0], num_classes, in_ch)
    if qat.maxpool is not None and len(sizes) == 4 and conv.kernel_size == (7, 7) and conv.out_channels == 64:
        block = megq_models.Bottleneck if first.bottleneck else megq_models.BasicBlock
        return megq_models.ResNet(block, sizes, num_classes, in_ch)
    raise ValueError(f"to_megq: no megq zoo ResNet has this layout (stages {sizes}, stem {conv.kernel_size} "
                     f"x{conv.out_channels}, maxpool {qat.maxpool is not None}); pass megq_model=")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, torch.nn.Module) else model


def to_megq(torch_qat_model: torch.nn.Module, megq_model: Optional[MegqModule] = None) -> MegqModule:
    """A megq QFloat model carrying ``torch_qat_model``'s weights, BN statistics, observer statistics and
    fake-quant switches (a ``DistributedDataParallel`` wrapper is unwrapped).

    ``megq_model``: a megq *float* model of the same layout (default: the zoo ResNet or MobileNetV2 matching the
    torch model); it is converted with ``quantize_qat`` and the torch model's qconfig, then every tensor is copied
    by name (the torch QAT model's ``state_dict`` keys are megq's). The result is in the torch model's train/eval
    mode, ready for ``megq.quantization.quantize``.
    """
    qat = _unwrap(torch_qat_model)
    if not isinstance(qat, (TorchQATResNet, TorchQATMobileNetV2)):
        raise TypeError(f"torch_qat_model: expected the result of prepare_qat, got {type(qat).__name__}")
    if megq_model is None:
        megq_model = _megq_float_model(qat)
    elif not isinstance(megq_model, MegqModule):
        raise TypeError(f"megq_model: expected a megq Module, got {type(megq_model).__name__}")
    mq = quantize_qat(megq_model, qconfig=qat.qconfig)
    sd = {k: v for k, v in qat.state_dict().items() if not k.endswith("num_batches_tracked")}
    own = mq._state_tensors()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    bad = [f"{k}: megq {tuple(t.shape)}, torch {tuple(sd[k].shape)}" for k, t in own.items()
           if k in sd and tuple(sd[k].shape) != tuple(t.shape)]
    if missing or unexpected or bad:
        raise ValueError(f"to_megq: the megq model does not fit the torch QAT model; missing {missing}, "
                         f"unexpected {unexpected}, shape mismatch {bad}")
    for k, t in own.items():
        t.set_value(np.array(sd[k].detach().cpu().numpy(), dtype=t.dtype))
    megq_mods = dict(mq.named_modules())
    for name, m in qat.named_modules():
        if isinstance(m, ConvBn) and m.bn is not None:
            megq_mods[name].bn.eps = float(m.bn.eps)
            if m.bn.momentum is not None:  # PyTorch's momentum weighs the batch, MegEngine's the running value
                megq_mods[name].bn.momentum = 1.0 - float(m.bn.momentum)
    mq.train(qat.training)
    for name, m in qat.named_modules():
        if not isinstance(m, QATModule):
            continue
        target = megq_mods[name]
        for kind in ("weight_observer", "act_observer", "weight_fake_quant", "act_fake_quant"):
            src, dst = getattr(m, kind, None), getattr(target, kind, None)
            if src is not None and dst is not None:
                dst.enable() if src.enabled else dst.disable()
    return mq


def layer_names(qat: torch.nn.Module) -> Dict[str, torch.nn.Module]:
    """``{name: module}`` of every quantized layer (QuantStub, conv, add, fc) of a torch QAT model."""
    return {n: m for n, m in _unwrap(qat).named_modules() if isinstance(m, QATModule) and m.with_act}
