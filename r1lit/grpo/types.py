"""The typed values that travel through a GRPO step: a scored rollout (stages 1–2's output), one micro-batch's loss
inputs (stage 4's) and the statistics a loss reports. Shapes: N completions (B problems × G), C completion tokens,
n and W the rows and tokens of one micro-batch."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from r1lit.data.batch import ProblemBatch
from r1lit.rollout.types import Rollout


@dataclass
class ScoredRollout:
    """B problems, their B·G completions and the completions' scores."""

    batch: ProblemBatch  # B problems
    rollout: Rollout  # N = B·G completions
    per_reward: Tensor  # [R, N] unweighted scores
    rewards: Tensor  # [N] weighted sum
    errors: Tensor  # [R] completions each reward failed on (scored 0)

    @property
    def num_groups(self) -> int:
        return len(self.batch)


@dataclass
class LossInputs:
    """What one micro-batch's loss needs; every tensor covers the micro-batch's n rows and its first W completion
    tokens (W = its longest trained completion)."""

    logps: Tensor
    """[n, W] the policy's log-probs of the sampled tokens, with gradient."""
    old_logps: Tensor
    """[n, W] the log-probs of the policy before this rollout's updates (μ = 1: ``logps`` detached)."""
    ref_logps: Tensor | None
    """[n, W] the frozen reference's log-probs (the KL penalty), or None without one."""
    sampler_logps: Tensor | None
    """[n, W] the engine's own log-probs of the tokens it sampled (importance sampling), or None."""
    advantages: Tensor
    """[n] one advantage per completion."""
    token_weights: Tensor
    """[n, W] each token's weight in the loss (the loss's ``token_weights``, computed once per rollout)."""
    mask: Tensor
    """[n, W] the completion tokens that get loss."""
    entropy_mask: Tensor
    """[n, W] float: the tokens whose policy-gradient term counts (``mask`` unless the top-entropy mask is on)."""
    entropy: Tensor | None = None
    """[n, W] the policy's per-token entropy, with gradient when the loss has an entropy bonus; else None."""


@dataclass
class LossStats:
    """Token-weighted sums a loss reports for logging (floats or device scalars); they add across micro-batches,
    ``mean`` divides at the end."""

    weight: float | Tensor = 0.0
    kl: float | Tensor = 0.0
    clip_low: float | Tensor = 0.0
    clip_high: float | Tensor = 0.0
    is_masked: float | Tensor = 0.0  # trained tokens the importance-sampling correction gave weight 0 (a count)

    def __add__(self, other: LossStats) -> LossStats:
        return LossStats(self.weight + other.weight, self.kl + other.kl, self.clip_low + other.clip_low,
                         self.clip_high + other.clip_high, self.is_masked + other.is_masked)

    def mean(self, field: str) -> float:
        """Weighted mean of ``kl``, ``clip_low`` or ``clip_high`` over the tokens seen so far."""
        return float(getattr(self, field) / self.weight) if self.weight > 0 else 0.0
