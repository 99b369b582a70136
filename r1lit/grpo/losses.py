"""The math of a GRPO step as pure functions and small loss classes.

Nothing here touches a model, an engine or a file. Shapes: ``N`` completions in the rollout (prompts × G),
``C`` completion tokens (right-padded), ``V`` vocabulary.

A loss variant is a class with one signature, ``loss(logps, old_logps, ref_logps, advantages, weights)
-> (loss, stats)``. The variants differ only in how per-token terms are weighted into one number, and that
weighting is computed once for the whole rollout (``token_weights``) and then sliced per micro-batch, so
summing micro-batch losses gives exactly the loss of one big batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from r1lit.errors import ConfigError

__all__ = [
    "group_advantages",
    "selective_log_softmax",
    "k3_kl",
    "clipped_surrogate",
    "GRPOLoss",
    "BNPOLoss",
    "DAPOLoss",
    "DrGRPOLoss",
    "GSPOLoss",
    "trained_rows",
]


def group_advantages(rewards: Tensor, num_generations: int, scale: str = "group", eps: float = 1e-4) -> Tensor:
    """Group-relative advantages: reward minus its group's mean, optionally divided by a std.

    rewards: [N] ordered group by group (G consecutive completions share a prompt).
    scale: ``group`` divides by the group's std (GRPO), ``batch`` by the whole batch's std, ``none`` keeps the
    centred reward (Dr. GRPO). Stds are unbiased (as torch and TRL compute them). A group with no spread
    (max == min) has advantage exactly 0 in every mode, whatever its values: centring alone does not give 0,
    since the float32 mean of eight 0.7s is not 0.7 and that residue divided by std + ``eps`` was ~6e-4.
    Returns [N].
    """
    if rewards.ndim != 1 or rewards.numel() % num_generations:
        raise ValueError(f"rewards must be [N] with N divisible by num_generations={num_generations}, got {tuple(rewards.shape)}")
    grouped = rewards.view(-1, num_generations)  # [B, G]
    flat = grouped.amax(dim=1, keepdim=True) == grouped.amin(dim=1, keepdim=True)  # [B, 1]: no signal
    centred = grouped - grouped.mean(dim=1, keepdim=True)  # [B, G]
    if scale == "group":
        std = grouped.std(dim=1, keepdim=True) if num_generations > 1 else torch.zeros_like(grouped[:, :1])
        centred = centred / (std + eps)
    elif scale == "batch":
        std = rewards.std() if rewards.numel() > 1 else rewards.new_zeros(())
        centred = centred / (std + eps)
    elif scale != "none":
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', got {scale!r}")
    return centred.masked_fill(flat, 0.0).reshape(-1)


def selective_log_softmax(logits: Tensor, targets: Tensor, temperature: float = 1.0, chunk_rows: int = 4) -> Tensor:
    """log p(target) under softmax(logits / temperature), without a [B, T, V] log-softmax.

    logits: [B, T, V] (any float dtype); targets: [B, T] token ids. Works ``chunk_rows`` sequences at a time
    in float32, so the extra memory is [chunk_rows, T, V] instead of a full copy of the logits.
    Returns [B, T] float32.
    """
    out = []
    for rows, ids in zip(logits.split(chunk_rows), targets.split(chunk_rows)):
        rows = rows.float() / temperature  # [b, T, V]
        picked = rows.gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # [b, T]
        out.append(picked - torch.logsumexp(rows, dim=-1))
    return torch.cat(out)


def k3_kl(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(policy || reference): exp(r - p) - (r - p) - 1, which is ≥ 0. Shapes [.., C]."""
    delta = ref_logps - logps
    return torch.exp(delta) - delta - 1.0


def clipped_surrogate(
    logps: Tensor, old_logps: Tensor, advantages: Tensor, epsilon_low: float, epsilon_high: float
) -> tuple[Tensor, Tensor, Tensor]:
    """PPO's clipped objective per token, as a loss (negated).

    logps, old_logps: [N, C]; advantages: [N]. Returns (per_token_loss [N, C], clipped_low [N, C] bool,
    clipped_high [N, C] bool), where clipped_* mark tokens whose gradient the clip removed.
    """
    ratio = torch.exp(logps - old_logps)  # [N, C]
    adv = advantages.unsqueeze(1)  # [N, 1]
    clipped_ratio = ratio.clamp(1.0 - epsilon_low, 1.0 + epsilon_high)
    per_token = -torch.min(ratio * adv, clipped_ratio * adv)
    clipped_low = (ratio < 1.0 - epsilon_low) & (adv < 0)
    clipped_high = (ratio > 1.0 + epsilon_high) & (adv > 0)
    return per_token, clipped_low, clipped_high


@dataclass
class LossStats:
    """Token-weighted sums a loss reports for logging (floats or device scalars); they add across micro-batches,
    ``mean`` divides at the end."""

    weight: float | Tensor = 0.0
    kl: float | Tensor = 0.0
    clip_low: float | Tensor = 0.0
    clip_high: float | Tensor = 0.0

    def __add__(self, other: "LossStats") -> "LossStats":
        return LossStats(self.weight + other.weight, self.kl + other.kl, self.clip_low + other.clip_low, self.clip_high + other.clip_high)

    def mean(self, field: str) -> float:
        """Weighted mean of ``kl``, ``clip_low`` or ``clip_high`` over the tokens seen so far."""
        return float(getattr(self, field) / self.weight) if self.weight > 0 else 0.0


def trained_sequences(mask: Tensor) -> float:
    """Rows of a [N, C] loss mask with any token: the sequences a per-sequence mean divides by (rows masked out
    whole, such as truncated completions under ``mask_truncated_completions``, do not count)."""
    return float((mask.sum(dim=1) > 0).sum().clamp(min=1))


class GRPOLoss:
    """GRPO as in DeepSeekMath: per-sequence token mean, then mean over sequences.

    The sequence-level mean gives long completions less weight per token (the length bias that Dr. GRPO and
    DAPO remove).
    """

    def __init__(self, epsilon: float = 0.2, epsilon_high: float | None = None, beta: float = 0.0):
        """
        Args:
            epsilon: lower clip range: the ratio is clipped at 1 - epsilon.
            epsilon_high: upper clip range (1 + epsilon_high); None means the same as epsilon. DAPO uses 0.28.
            beta: weight of the k3 KL penalty to the frozen reference model; 0 means no reference is kept.
        """
        if epsilon <= 0 or (epsilon_high is not None and epsilon_high <= 0):
            raise ConfigError(f"clip ranges must be positive, got epsilon={epsilon}, epsilon_high={epsilon_high}")
        if beta < 0:
            raise ConfigError(f"beta must be >= 0, got {beta}")
        self.epsilon = epsilon
        self.epsilon_high = epsilon if epsilon_high is None else epsilon_high
        self.beta = beta

    def token_weights(self, mask: Tensor, max_completion_length: int, global_tokens: float, world_size: int) -> Tensor:
        """Weight of each token's term in the loss, for the whole rollout on this rank.

        mask: [N, C] completion mask. ``global_tokens`` is the number of completion tokens over all ranks and
        ``world_size`` the number of ranks (gradients are averaged across ranks). Returns [N, C].
        """
        mask = mask.float()
        return mask / mask.sum(dim=1, keepdim=True).clamp(min=1.0) / trained_sequences(mask)

    def __call__(
        self, logps: Tensor, old_logps: Tensor, ref_logps: Tensor | None, advantages: Tensor, weights: Tensor,
        is_weights: Tensor | None = None,
    ) -> tuple[Tensor, LossStats]:
        """Loss of one micro-batch. logps/old_logps/ref_logps/weights/is_weights: [n, C]; advantages: [n].

        ``is_weights`` (importance-sampling correction for a sampler whose probabilities differ from the trainer's)
        multiply the policy-gradient term only, not the KL penalty.
        """
        per_token, low, high = clipped_surrogate(logps, old_logps, advantages, self.epsilon, self.epsilon_high)
        return self._aggregate(per_token, low, high, logps, ref_logps, weights, is_weights)

    def _aggregate(self, per_token, low, high, logps, ref_logps, weights, is_weights) -> tuple[Tensor, LossStats]:
        """Importance weights, the KL penalty and the token weighting applied to per-token surrogate terms."""
        if is_weights is not None:
            per_token = per_token * is_weights
        weights = weights.detach() if weights.requires_grad else weights
        kl_sum = 0.0
        if self.beta > 0:
            if ref_logps is None:
                raise ValueError("beta > 0 needs reference log-probs")
            kl = k3_kl(logps, ref_logps)
            per_token = per_token + self.beta * kl
            kl_sum = (kl.detach() * weights).sum()
        loss = (per_token * weights).sum()
        stats = LossStats(  # device scalars: the trainer reads them once per update, not per micro-batch
            weight=weights.sum(),
            kl=kl_sum,
            clip_low=(low.float() * weights).sum(),
            clip_high=(high.float() * weights).sum(),
        )
        return loss, stats


class BNPOLoss(GRPOLoss):
    """Token-level mean over this rank's rollout: every token weighs the same, whatever its sequence's length."""

    def token_weights(self, mask: Tensor, max_completion_length: int, global_tokens: float, world_size: int) -> Tensor:
        mask = mask.float()
        return mask / mask.sum().clamp(min=1.0)


class DAPOLoss(GRPOLoss):
    """DAPO's token-level mean over the global batch (all ranks), with the decoupled upper clip (ε_high = 0.28)."""

    def __init__(self, epsilon: float = 0.2, epsilon_high: float | None = 0.28, beta: float = 0.0):
        """
        Args:
            epsilon: lower clip range: the ratio is clipped at 1 - epsilon.
            epsilon_high: upper clip range (1 + epsilon_high); DAPO's clip-higher default is 0.28.
            beta: weight of the k3 KL penalty to the frozen reference model; 0 means no reference is kept.
        """
        super().__init__(epsilon=epsilon, epsilon_high=epsilon_high, beta=beta)

    def token_weights(self, mask: Tensor, max_completion_length: int, global_tokens: float, world_size: int) -> Tensor:
        # Ranks' gradients are averaged, so each rank scales by world_size to get sum / global token count.
        return mask.float() * world_size / max(global_tokens, 1.0)


class DrGRPOLoss(GRPOLoss):
    """Dr. GRPO: token sum divided by a constant (sequences × max completion length), no length bias.

    Pair it with ``scale_rewards: none`` on the module to drop the std division as the paper does.
    """

    def token_weights(self, mask: Tensor, max_completion_length: int, global_tokens: float, world_size: int) -> Tensor:
        return mask.float() / (trained_sequences(mask) * max_completion_length)


class GSPOLoss(GRPOLoss):
    """GSPO (Qwen's Group Sequence Policy Optimization): one importance ratio per completion, the geometric mean of
    its token ratios, s = exp(mean_t (log π − log π_old)), clipped at the sequence level to [1 − ε, 1 + ε_high];
    each completion's clipped term counts once (length-normalised: GRPO's mean over sequences of the token mean).

    Its clip ranges are about a thousand times narrower than the token-level ones (the paper's 3e-4 / 4e-4): a
    sequence ratio moves far less than single tokens do. With μ = 1 the ratio is 1 and the gradient equals GRPO's.
    """

    def __init__(self, epsilon: float = 3e-4, epsilon_high: float | None = 4e-4, beta: float = 0.0):
        """
        Args:
            epsilon: lower clip range of the sequence ratio (GSPO: 3e-4).
            epsilon_high: upper clip range of the sequence ratio (GSPO: 4e-4); None = epsilon.
            beta: weight of the k3 KL penalty to the frozen reference model; 0 means no reference is kept.
        """
        super().__init__(epsilon=epsilon, epsilon_high=epsilon_high, beta=beta)

    def __call__(self, logps, old_logps, ref_logps, advantages, weights, is_weights=None):
        mask = (weights > 0).float()  # [n, C]: the tokens that count
        length = mask.sum(dim=1).clamp(min=1.0)  # [n]
        seq_logps = (logps * mask).sum(dim=1) / length  # [n]: (1/|y|) Σ_t log π, so exp(seq − seq_old) = s
        seq_old = (old_logps * mask).sum(dim=1) / length
        per_seq, low, high = clipped_surrogate(seq_logps.unsqueeze(1), seq_old.unsqueeze(1), advantages, self.epsilon, self.epsilon_high)
        expand = lambda t: t.expand_as(logps)  # noqa: E731  every token of a completion carries its sequence's term
        return self._aggregate(expand(per_seq), expand(low), expand(high), logps, ref_logps, weights, is_weights)


def trained_rows(truncated: Tensor, num_generations: int, trained_groups: Tensor | None, mask_truncated: bool) -> Tensor:
    """[N] bool: the completions that get loss. truncated: [N] bool (no EOS within max_tokens); trained_groups: [B]
    bool or None (all), the groups dynamic sampling trains on. With ``mask_truncated`` (TRL's
    ``mask_truncated_completions``, DAPO's overlong filtering) truncated completions get none: a cut-off answer is
    neither rewarded nor punished for being cut. Their group's advantages are still computed with them."""
    rows = torch.ones_like(truncated, dtype=torch.bool)
    if trained_groups is not None:
        rows = trained_groups.to(truncated.device).repeat_interleave(num_generations)
    if mask_truncated:
        rows = rows & ~truncated.bool()
    return rows
