"""Running every reward over a rollout and checking what comes back."""

from __future__ import annotations

import math

import torch

from r1lit.errors import RewardError
from r1lit.rewards.base import Reward

__all__ = ["RewardError", "score_completions"]


def score_completions(rewards: list[Reward], prompts: list[str], completions: list[str], answers: list[str]) -> torch.Tensor:
    """Scores of each reward, unweighted: [R, N] float32. A reward that fails stops the step with its name and the
    completion it failed on."""
    rows = []
    for reward in rewards:
        label = f"reward '{reward.name}' ({type(reward).__name__})"
        try:
            scores = reward(prompts, completions, answers)
        except Exception as error:
            raise RewardError(
                f"{label} raised {type(error).__name__}: {error}\n  on a batch whose first completion is "
                f"{_excerpt(completions[0])} (gold {answers[0]!r}).\n  Fix the reward class, or remove it from "
                "model.rewards in your config."
            ) from error
        scores = list(scores)
        if len(scores) != len(completions):
            raise RewardError(f"{label} returned {len(scores)} scores for {len(completions)} completions; it must return one per completion")
        for i, score in enumerate(scores):
            if not isinstance(score, (int, float)) or not math.isfinite(score):
                raise RewardError(f"{label} returned {score!r} for completion {i} {_excerpt(completions[i])}; scores must be finite floats")
        rows.append(torch.tensor(scores, dtype=torch.float32))
    return torch.stack(rows)


def _excerpt(text: str, limit: int = 200) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
