"""Learning-rate schedules: each ``step()`` advances one step (call it per epoch or per iteration, consistently)
and sets every group's ``lr`` to ``base_lr * factor(step)``."""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional

from .optimizer import Optimizer

__all__ = ["LRScheduler", "MultiStepLR", "CosineAnnealingLR", "LinearWarmup"]


class LRScheduler:
    """Base class; subclasses define ``factor(step)``. The factor for step 0 is applied at construction."""

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: optimizer must be a megq Optimizer, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lrs: List[float] = [g.setdefault("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def _apply(self) -> None:
        f = self.factor(self.last_step)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f

    def step(self) -> None:
        """Advance one step."""
        self.last_step += 1
        self._apply()

    def get_lr(self) -> List[float]:
        """Current learning rate of each group."""
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> Dict[str, Any]:
        """The schedule's position, for checkpoints: ``{"last_step": int, "base_lrs": [float, ...]}``."""
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Resume at the saved step (and re-apply that step's learning rates to the optimizer)."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"last_step", "base_lrs"}:
            raise TypeError("load_state_dict: state_dict must be a dict with keys 'last_step' and 'base_lrs'")
        step, base = state_dict["last_step"], state_dict["base_lrs"]
        if type(step) is not int or step < 0:
            raise ValueError(f"load_state_dict: last_step must be a non-negative int, got {step!r}")
        if not isinstance(base, (list, tuple)) or len(base) != len(self.optimizer.param_groups):
            raise ValueError(f"load_state_dict: base_lrs must hold {len(self.optimizer.param_groups)} values")
        self.last_step, self.base_lrs = step, [float(b) for b in base]
        self._apply()


class MultiStepLR(LRScheduler):
    """Multiply by ``gamma`` at each step count in ``milestones``."""

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1) -> None:
        self.milestones = sorted(int(m) for m in milestones)
        if any(m < 0 for m in self.milestones):
            raise ValueError(f"MultiStepLR: milestones must be non-negative, got {self.milestones}")
        self.gamma = gamma
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        return self.gamma ** sum(step >= m for m in self.milestones)


class CosineAnnealingLR(LRScheduler):
    """Cosine decay from ``base_lr`` to ``eta_min`` over ``t_max`` steps (then stays at ``eta_min``)."""

    def __init__(self, optimizer: Optimizer, t_max: int, eta_min: float = 0.0) -> None:
        if t_max <= 0:
            raise ValueError(f"CosineAnnealingLR: t_max must be positive, got {t_max}")
        self.t_max, self.eta_min = int(t_max), float(eta_min)
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        s = min(step, self.t_max)
        base = self.base_lrs[0] if self.base_lrs[0] else 1.0
        ratio = self.eta_min / base
        return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * s / self.t_max))


class LinearWarmup(LRScheduler):
    """Linear ramp from ``start_factor`` to 1 over ``warmup_steps``, then ``after``'s schedule (shifted by the
    warm-up length) or a constant factor 1. ``after`` is built on the same optimizer and driven by this one."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int, start_factor: float = 0.1,
                 after: Optional[LRScheduler] = None) -> None:
        if warmup_steps < 0:
            raise ValueError(f"LinearWarmup: warmup_steps must be non-negative, got {warmup_steps}")
        if not 0.0 <= start_factor <= 1.0:
            raise ValueError(f"LinearWarmup: start_factor must be in [0, 1], got {start_factor}")
        self.warmup_steps, self.start_factor, self.after = int(warmup_steps), float(start_factor), after
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.start_factor + (1 - self.start_factor) * step / self.warmup_steps
        return self.after.factor(step - self.warmup_steps) if self.after is not None else 1.0
