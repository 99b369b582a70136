"""``val/accuracy`` over several named validation sets: the mean of the sets' accuracies, each set counting once
whatever its size (SimpleRL-Zoo's tables average benchmarks the same way)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class SetAccuracy:
    """Correct answers and problems per named set on this rank, for one validation epoch."""

    def __init__(self):
        self.totals: dict[str, Tensor] = {}  # set name -> [correct, problems], float64

    def reset(self) -> None:
        self.totals = {}

    def add(self, name: str, scores: Tensor) -> None:
        """scores: [B] accuracy rewards (1 correct, 0 not) of one batch of set ``name``."""
        totals = self.totals.setdefault(name, torch.zeros(2, dtype=torch.float64))
        totals += torch.tensor([float(scores.sum()), float(scores.numel())], dtype=torch.float64)

    def mean(self, names: list[str], device, gather: Callable[[Tensor], Tensor] | None = None) -> float | None:
        """The mean over ``names`` of each set's accuracy (sets that saw no problem left out); ``gather`` sums the
        ranks' totals (e.g. Lightning's ``all_gather``, which stacks them on a new first dimension)."""
        totals = torch.stack([self.totals.get(name, torch.zeros(2, dtype=torch.float64)) for name in names]).to(device)
        if gather is not None:
            totals = gather(totals).sum(dim=0)  # [sets, 2]
        accuracies = [correct / seen for correct, seen in totals.tolist() if seen > 0]
        return sum(accuracies) / len(accuracies) if accuracies else None
