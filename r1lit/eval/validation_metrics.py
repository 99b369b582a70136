"""What one validation batch measures: the training rewards on each problem's first sample (pass@1 by the accuracy
reward) and, with ``PassAtK``, pass@k / maj@k over all n samples graded by answer equivalence alone."""

from __future__ import annotations

import torch
from torch import Tensor

from r1lit.data.batch import ProblemBatch
from r1lit.eval.pass_at_k import PassAtK
from r1lit.grading.answers import extract_answer
from r1lit.rewards.accuracy import AccuracyReward
from r1lit.rewards.base import Reward
from r1lit.rewards.scoring import score_completions, weighted_sum
from r1lit.rollout.types import Rollout


def validation_metrics(
    rollout: Rollout, batch: ProblemBatch, n: int, rewards: list[Reward], accuracy: AccuracyReward | None,
    pass_at_k: PassAtK | None, max_tokens: int,
) -> tuple[dict[str, Tensor], Tensor | None]:
    """rollout: n samples per problem of ``batch``, problem by problem ([B·n]). Returns the metrics by name (without
    the ``val/`` prefix) and the accuracy reward's scores of the first samples ([B], None without one)."""
    first = list(range(0, len(rollout.texts), n))  # each problem's first sample
    per_reward, _ = score_completions(  # [R, B]
        rewards, batch.prompts, [rollout.texts[i] for i in first], batch.answers,
        rollout.completion_lengths[first].tolist(), max_tokens,
    )
    metrics = {"reward": weighted_sum(rewards, per_reward).mean()}
    scores = per_reward[rewards.index(accuracy)] if accuracy is not None else None
    if scores is not None:
        metrics["accuracy"] = scores.mean()
    for reward, row in zip(rewards, per_reward):
        metrics[f"rewards/{reward.name}/mean"] = row.mean()
    if pass_at_k is not None and accuracy is not None:
        golds = [a for a in batch.answers for _ in range(n)]  # graded by equivalence only, no format
        correct = accuracy([p for p in batch.prompts for _ in range(n)], rollout.texts, golds)
        extracted = [extract_answer(text) for text in rollout.texts]
        metrics.update({name: torch.tensor(value) for name, value in pass_at_k.metrics(extracted, correct).items()})
    return metrics, scores
