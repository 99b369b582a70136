"""The optimizer and learning-rate schedule GRPOModule trains with: the seed recipe's AdamW and cosine by default,
any torch optimizer or scheduler from YAML (LightningCLI's ``OptimizerCallable`` / ``LRSchedulerCallable``)."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def default_optimizer(params) -> torch.optim.Optimizer:
    """The seed recipe's optimizer: AdamW, lr 3e-6, betas (0.9, 0.99), no weight decay; torch's fused kernel (one
    pass over all parameters; on a CPU torch's default is a Python loop over them)."""
    return torch.optim.AdamW(params, lr=3e-6, betas=(0.9, 0.99), weight_decay=0.0, fused=True)


def cosine_with_warmup(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier: linear warmup from 0 to 1 over ``warmup_steps``, then cosine down to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class CosineWithWarmup(LambdaLR):
    """Linear warmup, then cosine decay over the run's optimizer steps (the seed recipe's schedule, stepped once
    per optimizer step). GRPOModule tells it the run's length (``fit_to``) when it builds it."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_ratio: float = 0.0, min_lr_ratio: float = 0.0,
                 total_steps: int | None = None):
        """
        Args:
            warmup_ratio: fraction of the optimizer steps spent in linear warmup before the cosine decay.
            min_lr_ratio: the cosine decays to this fraction of the peak learning rate.
            total_steps: optimizer steps of the run; None = set by GRPOModule (``max_steps``, else epochs × batches × μ).
        """
        if not 0 <= warmup_ratio < 1 or not 0 <= min_lr_ratio <= 1:
            raise ValueError(f"warmup_ratio must be in [0, 1) and min_lr_ratio in [0, 1], got {warmup_ratio}, {min_lr_ratio}")
        self.warmup_ratio, self.min_lr_ratio, self.total_steps = warmup_ratio, min_lr_ratio, total_steps
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        if self.total_steps is None:
            return 1.0
        warmup = int(self.warmup_ratio * self.total_steps)
        return cosine_with_warmup(step, warmup, self.total_steps, self.min_lr_ratio)

    def fit_to(self, total_steps: int) -> None:
        """Set the run's length before the first step and re-apply the learning rate of step 0."""
        self.total_steps = total_steps
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * self.factor(self.last_epoch)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
