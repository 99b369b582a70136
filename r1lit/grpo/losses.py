"""The math of a GRPO step as pure functions and small loss classes.

Nothing here touches a model, an engine or a file. Shapes: ``N`` completions in the rollout (prompts × G),
``C`` completion tokens (right-padded), ``V`` vocabulary.

A loss variant is a class with one signature, ``loss(LossInputs) -> (loss, LossStats)``. The variants differ
only in how per-token terms are weighted into one number, and that weighting is computed once for the whole
rollout (``token_weights``) and then sliced per micro-batch, so summing micro-batch losses gives exactly the loss
of one big batch. Every loss also owns what reshapes its per-token terms: the importance-sampling weights, the
entropy bonus and top-entropy mask (``EntropyConfig``), and which completions get loss at all
(``mask_truncated_completions``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from r1lit.errors import ConfigError
from r1lit.grpo.entropy import EntropyConfig, high_entropy_mask
from r1lit.grpo.importance_sampling import ImportanceSampling
from r1lit.grpo.types import LossInputs, LossStats

__all__ = [
    "k3_kl",
    "clipped_surrogate",
    "GRPOLoss",
    "BNPOLoss",
    "DAPOLoss",
    "DrGRPOLoss",
    "GSPOLoss",
]


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


def trained_sequences(mask: Tensor) -> float:
    """Rows of a [N, C] loss mask with any token: the sequences a per-sequence mean divides by (rows masked out
    whole, such as truncated completions under ``mask_truncated_completions``, do not count)."""
    return float((mask.sum(dim=1) > 0).sum().clamp(min=1))


class GRPOLoss:
    """GRPO as in DeepSeekMath: per-sequence token mean, then mean over sequences.

    The sequence-level mean gives long completions less weight per token (the length bias that Dr. GRPO and
    DAPO remove).
    """

    def __init__(
        self,
        epsilon: float = 0.2,
        epsilon_high: float | None = None,
        beta: float = 0.0,
        importance_sampling: ImportanceSampling | None = None,
        entropy: EntropyConfig = EntropyConfig(),
        mask_truncated_completions: bool = False,
    ):
        """
        Args:
            epsilon: lower clip range: the ratio is clipped at 1 - epsilon.
            epsilon_high: upper clip range (1 + epsilon_high); None means the same as epsilon. DAPO uses 0.28.
            beta: weight of the k3 KL penalty to the frozen reference model; 0 means no reference is kept.
            importance_sampling: the sampler–trainer mismatch correction for engines that return their own
                log-probs (vLLM): ``ImportanceSampling`` (truncated), ``MaskedImportanceSampling`` or
                ``GeometricSequenceMask``; None = no correction. Mismatch metrics are logged either way.
            entropy: the entropy bonus and the top-entropy token mask (``EntropyConfig``; both off by default).
            mask_truncated_completions: completions cut at ``sampling.max_tokens`` (no EOS) get no loss (TRL's
                name; DAPO's overlong filtering). They still count in their group's advantages.
        """
        if epsilon <= 0 or (epsilon_high is not None and epsilon_high <= 0):
            raise ConfigError(f"clip ranges must be positive, got epsilon={epsilon}, epsilon_high={epsilon_high}")
        if beta < 0:
            raise ConfigError(f"beta must be >= 0, got {beta}")
        self.epsilon = epsilon
        self.epsilon_high = epsilon if epsilon_high is None else epsilon_high
        self.beta = beta
        self.importance_sampling, self.entropy = importance_sampling, entropy
        self.mask_truncated_completions = mask_truncated_completions

    def token_weights(self, mask: Tensor, max_completion_length: int, global_tokens: float, world_size: int) -> Tensor:
        """Weight of each token's term in the loss, for the whole rollout on this rank.

        mask: [N, C] completion mask. ``global_tokens`` is the number of completion tokens over all ranks and
        ``world_size`` the number of ranks (gradients are averaged across ranks). Returns [N, C].
        """
        mask = mask.float()
        return mask / mask.sum(dim=1, keepdim=True).clamp(min=1.0) / trained_sequences(mask)

    def trained_rows(self, truncated: Tensor, num_generations: int, trained_groups: Tensor | None) -> Tensor:
        """[N] bool: the completions that get loss. truncated: [N] bool (no EOS within max_tokens); trained_groups:
        [B] bool or None (all), the groups dynamic sampling trains on. With ``mask_truncated_completions``
        truncated completions get none: a cut-off answer is neither rewarded nor punished for being cut. Their
        group's advantages are still computed with them."""
        rows = torch.ones_like(truncated, dtype=torch.bool)
        if trained_groups is not None:
            rows = trained_groups.to(truncated.device).repeat_interleave(num_generations)
        if self.mask_truncated_completions:
            rows = rows & ~truncated.bool()
        return rows

    @property
    def masks_by_entropy(self) -> bool:
        """Whether the top-entropy mask is on (it needs the rollout's entropies before the first update)."""
        return self.entropy.top_quantile < 1.0

    def entropy_mask(self, entropy: Tensor | None, mask: Tensor) -> Tensor:
        """[N, C] float, once per rollout: the tokens whose policy-gradient term counts. entropy (None unless
        ``masks_by_entropy``), mask: [N, C]."""
        if not self.masks_by_entropy:
            return mask.float()
        return high_entropy_mask(entropy, mask, self.entropy.top_quantile)

    def __call__(self, inputs: LossInputs) -> tuple[Tensor, LossStats]:
        """Loss of one micro-batch, and its statistics."""
        per_token, low, high = clipped_surrogate(inputs.logps, inputs.old_logps, inputs.advantages, self.epsilon,
                                                 self.epsilon_high)
        return self._aggregate(per_token, low, high, inputs)

    def pg_weights(self, inputs: LossInputs) -> tuple[Tensor | None, Tensor | float]:
        """[n, W] weights of the policy-gradient term (importance sampling × top-entropy mask; None = all 1), and
        how many trained tokens importance sampling gave weight 0."""
        weights, masked = None, 0.0
        if inputs.sampler_logps is not None and self.importance_sampling is not None:
            weights = self.importance_sampling.weights(inputs.old_logps, inputs.sampler_logps, inputs.mask)
            masked = ((weights == 0) & inputs.mask.bool()).sum()
        if self.masks_by_entropy:
            weights = inputs.entropy_mask if weights is None else weights * inputs.entropy_mask
        return weights, masked

    def _aggregate(self, per_token, low, high, inputs: LossInputs) -> tuple[Tensor, LossStats]:
        """Importance weights, the KL penalty, the token weighting and the entropy bonus applied to per-token
        surrogate terms."""
        is_weights, is_masked = self.pg_weights(inputs)
        if is_weights is not None:
            per_token = per_token * is_weights
        weights = inputs.token_weights
        weights = weights.detach() if weights.requires_grad else weights
        kl_sum = 0.0
        if self.beta > 0:
            if inputs.ref_logps is None:
                raise ValueError("beta > 0 needs reference log-probs")
            kl = k3_kl(inputs.logps, inputs.ref_logps)
            per_token = per_token + self.beta * kl
            kl_sum = (kl.detach() * weights).sum()
        loss = (per_token * weights).sum()
        if self.entropy.coef > 0:  # the bonus, weighted like the loss's own tokens
            loss = loss - self.entropy.coef * (inputs.entropy * weights).sum()
        stats = LossStats(  # device scalars: the trainer reads them once per update, not per micro-batch
            weight=weights.sum(),
            kl=kl_sum,
            clip_low=(low.float() * weights).sum(),
            clip_high=(high.float() * weights).sum(),
            is_masked=is_masked,
        )
        return loss, stats


class BNPOLoss(GRPOLoss):
    """Token-level mean over this rank's rollout: every token weighs the same, whatever its sequence's length."""

    def token_weights(self, mask: Tensor, max_completion_length: int, global_tokens: float, world_size: int) -> Tensor:
        mask = mask.float()
        return mask / mask.sum().clamp(min=1.0)


class DAPOLoss(GRPOLoss):
    """DAPO's token-level mean over the global batch (all ranks), with the decoupled upper clip (ε_high = 0.28)."""

    def __init__(
        self,
        epsilon: float = 0.2,
        epsilon_high: float | None = 0.28,
        beta: float = 0.0,
        importance_sampling: ImportanceSampling | None = None,
        entropy: EntropyConfig = EntropyConfig(),
        mask_truncated_completions: bool = False,
    ):
        """
        Args:
            epsilon: lower clip range: the ratio is clipped at 1 - epsilon.
            epsilon_high: upper clip range (1 + epsilon_high); DAPO's clip-higher default is 0.28.
            beta: weight of the k3 KL penalty to the frozen reference model; 0 means no reference is kept.
            importance_sampling: the sampler–trainer mismatch correction (see ``GRPOLoss``); None = none.
            entropy: the entropy bonus and the top-entropy token mask (``EntropyConfig``; both off by default).
            mask_truncated_completions: completions cut at ``sampling.max_tokens`` get no loss (DAPO's overlong
                filtering).
        """
        super().__init__(epsilon, epsilon_high, beta, importance_sampling, entropy, mask_truncated_completions)

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

    def __init__(
        self,
        epsilon: float = 3e-4,
        epsilon_high: float | None = 4e-4,
        beta: float = 0.0,
        importance_sampling: ImportanceSampling | None = None,
        entropy: EntropyConfig = EntropyConfig(),
        mask_truncated_completions: bool = False,
    ):
        """
        Args:
            epsilon: lower clip range of the sequence ratio (GSPO: 3e-4).
            epsilon_high: upper clip range of the sequence ratio (GSPO: 4e-4); None = epsilon.
            beta: weight of the k3 KL penalty to the frozen reference model; 0 means no reference is kept.
            importance_sampling: the sampler–trainer mismatch correction (see ``GRPOLoss``); None = none.
            entropy: the entropy bonus and the top-entropy token mask (``EntropyConfig``; both off by default).
            mask_truncated_completions: completions cut at ``sampling.max_tokens`` get no loss.
        """
        super().__init__(epsilon, epsilon_high, beta, importance_sampling, entropy, mask_truncated_completions)

    def __call__(self, inputs: LossInputs) -> tuple[Tensor, LossStats]:
        logps = inputs.logps
        mask = (inputs.token_weights > 0).float()  # [n, W]: the tokens that count
        length = mask.sum(dim=1).clamp(min=1.0)  # [n]
        seq_logps = (logps * mask).sum(dim=1) / length  # [n]: (1/|y|) Σ_t log π, so exp(seq − seq_old) = s
        seq_old = (inputs.old_logps * mask).sum(dim=1) / length
        per_seq, low, high = clipped_surrogate(seq_logps.unsqueeze(1), seq_old.unsqueeze(1), inputs.advantages,
                                               self.epsilon, self.epsilon_high)
        expand = lambda t: t.expand_as(logps)  # noqa: E731  every token of a completion carries its sequence's term
        return self._aggregate(expand(per_seq), expand(low), expand(high), inputs)
