"""Group-relative advantages, and the one rule for a flat group (all G rewards equal: no learning signal) that
advantages, dynamic sampling, the difficulty filter and ``frac_reward_zero_std`` share."""

from __future__ import annotations

import torch
from torch import Tensor


def flat_groups(rewards: Tensor, num_generations: int) -> Tensor:
    """[B] bool: the groups whose rewards are all exactly equal (max == min). rewards: [N] ordered group by group."""
    grouped = rewards.view(-1, num_generations)  # [B, G]
    return grouped.amax(dim=1) == grouped.amin(dim=1)


def group_advantages(rewards: Tensor, num_generations: int, scale: str = "group", eps: float = 1e-4) -> Tensor:
    """Group-relative advantages: reward minus its group's mean, optionally divided by a std.

    rewards: [N] ordered group by group (G consecutive completions share a prompt).
    scale: ``group`` divides by the group's std (GRPO), ``batch`` by the whole batch's std, ``none`` keeps the
    centred reward (Dr. GRPO). Stds are unbiased (as torch and TRL compute them). A flat group (``flat_groups``)
    has advantage exactly 0 in every mode, whatever its values: centring alone does not give 0, since the float32
    mean of eight 0.7s is not 0.7 and that residue divided by std + ``eps`` was ~6e-4.
    Returns [N].
    """
    if rewards.ndim != 1 or rewards.numel() % num_generations:
        raise ValueError(f"rewards must be [N] with N divisible by num_generations={num_generations}, got {tuple(rewards.shape)}")
    grouped = rewards.view(-1, num_generations)  # [B, G]
    flat = flat_groups(rewards, num_generations).unsqueeze(1)  # [B, 1]: no signal
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
