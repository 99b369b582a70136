"""What a training step logs, assembled from what the step produced (TRL's names where TRL has the metric).

The module calls these with its rollout pool and optimisation statistics; nothing here touches a model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from r1lit.dynamic_sampling import Filled, Scored
from r1lit.losses import completion_length_stats
from r1lit.rewards.base import Reward

SAMPLING_TAGS = {  # sampler-vs-trainer statistics from the optimisation -> logged tags
    "logp_diff_mean": "sampling/logp_diff/mean", "logp_diff_max": "sampling/logp_diff/max",
    "is_ratio_mean": "sampling/is_ratio/mean", "mismatch_kl": "sampling/mismatch_kl",
    "mismatch_kl_k1": "sampling/mismatch_kl_k1", "is_masked_ratio": "sampling/is_masked_ratio",
}


def rollout_metrics(pool: Scored, rewards: list[Reward], lengths: Tensor, truncated: Tensor) -> dict[str, Tensor]:
    """Rewards and lengths of every completion generated this step (before dynamic sampling's filtering).
    lengths, truncated: [N] over all ranks, for the min/max/terminated length metrics."""
    G, generated = pool.rollout.num_generations, pool.rollout
    grouped = pool.rewards.view(-1, G)  # [B, G]
    metrics = {
        "reward": pool.rewards.mean(),
        "reward_std": grouped.std(dim=1).mean(),
        "frac_reward_zero_std": (grouped.std(dim=1) < 1e-6).float().mean(),
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


def dynamic_sampling_metrics(filled: Filled | None) -> dict[str, float]:
    """Groups kept (informative, trained) and dropped (zero spread), generation rounds, and whether the cap ended
    the search short; per rank."""
    if filled is None:
        return {}
    return {"dynamic_sampling/groups_kept": filled.kept, "dynamic_sampling/groups_dropped": filled.dropped,
            "dynamic_sampling/rounds": filled.rounds, "dynamic_sampling/capped": float(filled.capped)}


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
