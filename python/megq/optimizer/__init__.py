"""megq.optimizer: SGD, Adam, AdamW and learning-rate schedules (MegEngine-style ``step``/``clear_grad``)."""
from .adam import Adam, AdamW
from .lr_scheduler import CosineAnnealingLR, LinearWarmup, LRScheduler, MultiStepLR
from .optimizer import Optimizer
from .sgd import SGD

CosineAnnealing = CosineAnnealingLR

__all__ = ["Adam", "AdamW", "CosineAnnealing", "CosineAnnealingLR", "LRScheduler", "LinearWarmup", "MultiStepLR",
           "Optimizer", "SGD"]
