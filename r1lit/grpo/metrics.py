"""What a training step logs (TRL's names where TRL has the metric): pure functions from what the step produced
(its rollout pool, per-token statistics, the optimisation's numbers) to final metric names. Nothing here touches a
model or an optimizer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from r1lit.grpo.advantages import flat_groups
from r1lit.grpo.types import ScoredRollout
from r1lit.rewards.base import Reward


def sampling_mismatch(trainer_logps: Tensor, sampler_logps: Tensor, mask: Tensor) -> dict[str, float]:
    """How far the sampler's log-probs are from the trainer's on the sampled tokens. Shapes [N, C].

    ``mismatch_kl`` estimates KL(sampler ‖ trainer) per token from the sampled tokens with k3 (r − 1 − log r,
    r = π_trainer / π_sampler: unbiased, ≥ 0 per token); ``mismatch_kl_k1`` is the plain mean of log π_sampler −
    log π_trainer (verl logs both as its rollout-correction ``kl``)."""
    mask = mask.bool()
    diff = (trainer_logps.detach() - sampler_logps)[mask]
    if diff.numel() == 0:
        return {"logp_diff_mean": 0.0, "logp_diff_max": 0.0, "is_ratio_mean": 1.0, "mismatch_kl": 0.0, "mismatch_kl_k1": 0.0}
    return {
        "logp_diff_mean": float(diff.abs().mean()),
        "logp_diff_max": float(diff.abs().max()),
        "is_ratio_mean": float(torch.exp(diff).mean()),
        "mismatch_kl": float((torch.exp(diff) - 1.0 - diff).mean()),
        "mismatch_kl_k1": float((-diff).mean()),
    }


def completion_length_stats(lengths: Tensor, truncated: Tensor) -> dict[str, Tensor]:
    """TRL's completion-length metrics. lengths: [N] tokens per completion; truncated: [N] bool (no EOS).

    ``mean_terminated_length`` averages the completions that ended with EOS; it is 0 when none did.
    """
    lengths = lengths.float()
    terminated = lengths[~truncated.bool()]
    return {
        "min_length": lengths.min(),
        "max_length": lengths.max(),
        "mean_terminated_length": terminated.mean() if terminated.numel() else lengths.new_zeros(()),
    }


SAMPLING_TAGS = {  # sampler-vs-trainer statistics from the optimisation -> logged tags
    "logp_diff_mean": "sampling/logp_diff/mean", "logp_diff_max": "sampling/logp_diff/max",
    "is_ratio_mean": "sampling/is_ratio/mean", "mismatch_kl": "sampling/mismatch_kl",
    "mismatch_kl_k1": "sampling/mismatch_kl_k1", "is_masked_ratio": "sampling/is_masked_ratio",
}


def rollout_metrics(pool: ScoredRollout, rewards: list[Reward], lengths: Tensor, truncated: Tensor) -> dict[str, Tensor]:
    """Rewards and lengths of every completion generated this step (before dynamic sampling's filtering).
    lengths, truncated: [N] over all ranks, for the min/max/terminated length metrics."""
    G, generated = pool.rollout.num_generations, pool.rollout
    grouped = pool.rewards.view(-1, G)  # [B, G]
    metrics = {
        "reward": pool.rewards.mean(),
        "reward_std": grouped.std(dim=1).mean(),
        "frac_reward_zero_std": flat_groups(pool.rewards, G).float().mean(),
        "completions/mean_length": generated.completion_lengths.float().mean(),
        "completions/clipped_ratio": generated.truncated.float().mean(),
        **{f"completions/{k}": v for k, v in completion_length_stats(lengths, truncated).items()},
    }
    for reward, row, errors in zip(rewards, pool.per_reward, pool.errors):
        metrics[f"rewards/{reward.name}/mean"] = row.mean()
        metrics[f"rewards/{reward.name}/std"] = row.std() if row.numel() > 1 else row.new_zeros(())
        if reward.on_error == "zero":
            metrics[f"rewards/{reward.name}/errors"] = errors
    return metrics


def optimise_metrics(stats: dict[str, float], beta: float) -> dict[str, float]:
    """The optimisation's statistics under their logged names."""
    metrics = {
        "entropy": stats["entropy"],
        "entropy/trained": stats["entropy_trained"],
        "clip_ratio/low_mean": stats["clip_low"],
        "clip_ratio/high_mean": stats["clip_high"],
        "clip_ratio/region_mean": stats["clip_low"] + stats["clip_high"],
        "loss": stats["loss"],
        "grad_norm": stats["grad_norm"],
        "lr": stats["lr"],
    }
    if beta > 0:
        metrics["kl"] = stats["kl"]
    for key, tag in SAMPLING_TAGS.items():
        if key in stats:  # the engine returned its own log-probs
            metrics[tag] = stats[key]
    return metrics


def as_tensors(metrics: dict, device: torch.device) -> dict[str, Tensor]:
    return {k: torch.as_tensor(v, dtype=torch.float32, device=device) for k, v in metrics.items()}
