"""What callbacks receive of a training step: one ``ScoredGroup`` per trained problem, each holding its
``ScoredCompletion``s. Built once per step from the step's tensors with one ``.tolist()`` each (one host transfer
per tensor, not one per element), so callbacks read plain Python values."""

from __future__ import annotations

from dataclasses import dataclass, fields

from torch import Tensor

from r1lit.data.batch import ProblemBatch
from r1lit.rollout.types import Rollout


@dataclass(frozen=True)
class ScoredCompletion:
    """One sampled answer and how it was judged."""

    text: str
    """The decoded completion, special tokens removed."""
    reward: float
    """Weighted sum of the rewards."""
    scores: dict[str, float]
    """Each reward's unweighted score, by reward name."""
    advantage: float
    """Its group-normalised advantage."""
    length: int
    """Tokens, EOS included."""
    truncated: bool
    """No EOS within max_tokens."""


@dataclass(frozen=True)
class ScoredGroup:
    """One problem of the step and its G completions."""

    problem: str
    answer: str
    """The gold answer."""
    prompt: str
    """The full prompt text (chat template and system prompt included)."""
    completions: list[ScoredCompletion]


COMPLETION_FIELDS = tuple(f.name for f in fields(ScoredCompletion))


def scored_groups(batch: ProblemBatch, rollout: Rollout, per_reward: Tensor, rewards: Tensor, advantages: Tensor,
                  reward_names: list[str]) -> list[ScoredGroup]:
    """Groups of a step, in batch order. rollout: N = B·G rows; per_reward: [R, N]; rewards, advantages: [N]."""
    G = rollout.num_generations
    rewards_, advantages_ = rewards.tolist(), advantages.tolist()  # one transfer per tensor
    scores_ = per_reward.tolist()
    lengths, truncated = rollout.completion_lengths.tolist(), rollout.truncated.tolist()
    groups = []
    for b, (problem, answer, prompt) in enumerate(zip(batch.problems, batch.answers, batch.prompts)):
        completions = [
            ScoredCompletion(
                text=rollout.texts[i], reward=rewards_[i],
                scores={name: scores_[r][i] for r, name in enumerate(reward_names)},
                advantage=advantages_[i], length=int(lengths[i]), truncated=bool(truncated[i]),
            )
            for i in range(b * G, (b + 1) * G)
        ]
        groups.append(ScoredGroup(problem=problem, answer=answer, prompt=prompt, completions=completions))
    return groups
