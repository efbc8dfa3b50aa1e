"""Weight initialisation shared by the model definitions (as MegEngine's official models)."""
from __future__ import annotations

import math

from .. import module as M
from ..module import init


def init_resnet_weights(model: M.Module) -> None:
    """Conv: MSRA normal (fan_out, relu); BN: gamma 1, beta 0; Linear: MSRA uniform (a=sqrt(5)), uniform bias."""
    for m in model.modules():
        if isinstance(m, M.Conv2d):
            init.msra_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                bound = 1 / math.sqrt(init.calculate_fan_in_and_fan_out(m.weight)[0])
                init.uniform_(m.bias, -bound, bound)
        elif isinstance(m, (M.BatchNorm1d, M.BatchNorm2d)):
            init.ones_(m.weight)
            init.zeros_(m.bias)
        elif isinstance(m, M.Linear):
            init.msra_uniform_(m.weight, a=math.sqrt(5))
            if m.bias is not None:
                bound = 1 / math.sqrt(m.in_features)
                init.uniform_(m.bias, -bound, bound)
