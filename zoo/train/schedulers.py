"""Learning-rate schedules by name (stepped once per epoch)."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler

from zoo.registry import Registry

SCHEDULERS: Registry = Registry("scheduler")


@SCHEDULERS.register("cosine")
def cosine(optimizer: Optimizer, epochs: int) -> LRScheduler:
    """Cosine decay from lr to ~0 over the maximum number of epochs."""
    return CosineAnnealingLR(optimizer, T_max=max(1, int(epochs)))


@SCHEDULERS.register("constant")
def constant(optimizer: Optimizer, epochs: int) -> LRScheduler:
    # A LambdaLR rather than no scheduler, so checkpoints always hold a scheduler state.
    return LambdaLR(optimizer, lambda epoch: 1.0)


SCHEDULERS.add("none", constant)
