"""Running every reward over a rollout and checking what comes back."""

from __future__ import annotations

import logging
import math
import numbers

import torch

from r1lit.errors import RewardError
from r1lit.rewards.base import Reward

__all__ = ["RewardError", "score_completions"]

log = logging.getLogger(__name__)


def score_completions(
    rewards: list[Reward], prompts: list[str], completions: list[str], answers: list[str],
    lengths: list[int] | None = None, max_tokens: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of each reward, unweighted: [R, N] float32, and per reward the number of completions it failed on
    and scored 0 (``on_error="zero"``): [R] long. A reward with ``on_error="raise"`` that fails stops the step
    with its name and the completion it failed on. ``lengths`` (tokens per completion, [N]) and ``max_tokens``
    reach the rewards that declare ``needs_token_lengths``."""
    rows, errors = [], []
    for reward in rewards:
        scores, failed = _score(_Call(reward, lengths, max_tokens), prompts, completions, answers)
        rows.append(torch.tensor(scores, dtype=torch.float32))
        errors.append(failed)
    return torch.stack(rows), torch.tensor(errors, dtype=torch.long)


class _Call:
    """Calls a reward on the completions at given positions, adding their token lengths for the rewards that
    ask for them."""

    def __init__(self, reward: Reward, lengths: list[int] | None, max_tokens: int | None):
        self.reward, self.name, self.on_error = reward, reward.name, reward.on_error
        self.wants_lengths = getattr(reward, "needs_token_lengths", False)
        if self.wants_lengths and lengths is None:
            raise RewardError(f"reward '{reward.name}' needs the completions' token lengths: pass lengths=")
        self.lengths, self.max_tokens = lengths, max_tokens

    def __call__(self, prompts, completions, answers, positions: list[int] | None = None):
        if not self.wants_lengths:
            return self.reward(prompts, completions, answers)
        lengths = list(self.lengths) if positions is None else [self.lengths[i] for i in positions]
        return self.reward(prompts, completions, answers, completion_lengths=lengths, max_tokens=self.max_tokens)


def _score(reward: _Call, prompts: list[str], completions: list[str], answers: list[str]) -> tuple[list[float], int]:
    label = f"reward '{reward.name}' ({type(reward.reward).__name__})"
    try:
        scores = as_scores(reward(prompts, completions, answers))
    except Exception as error:
        return _one_by_one(reward, label, prompts, completions, answers, error)
    if len(scores) != len(completions):
        raise RewardError(f"{label} returned {len(scores)} scores for {len(completions)} completions; it must return one per completion")
    bad = [i for i, score in enumerate(scores) if not _finite(score)]
    if bad and reward.on_error == "raise":
        i = bad[0]
        raise RewardError(
            f"{label} returned {scores[i]!r} for completion {i} {_excerpt(completions[i])}; scores must be finite floats. "
            f"Fix the reward, or set its on_error: zero to score such completions 0."
        )
    if bad:
        log.warning("%s returned non-finite scores for %d of %d completions; scored 0", label, len(bad), len(scores))
    return [0.0 if i in bad else float(score) for i, score in enumerate(scores)], len(bad)


def _one_by_one(reward: _Call, label: str, prompts, completions, answers, batch_error: Exception) -> tuple[list[float], int]:
    """The batch call raised: score each completion alone, to name the one it fails on (``raise``) or to score
    only the failing ones 0 (``zero``)."""
    scores, failures = [], []
    for i, args in enumerate(zip(prompts, completions, answers)):
        try:
            (score,) = as_scores(reward(*([a] for a in args), positions=[i]))
            if not _finite(score):
                raise ValueError(f"returned {score!r}")
        except Exception as error:
            if reward.on_error == "raise":
                raise RewardError(
                    f"{label} raised {type(error).__name__}: {error}\n  on completion {i} {_excerpt(completions[i])} "
                    f"(gold {answers[i]!r}).\n  Fix the reward class, remove it from model.rewards in your config, "
                    "or set its on_error: zero to score such completions 0."
                ) from error
            failures.append((i, error))
            score = 0.0
        scores.append(float(score))
    if not failures and reward.on_error == "raise":  # fails on the batch, not on any one completion
        raise RewardError(
            f"{label} raised {type(batch_error).__name__}: {batch_error}\n  on a batch of {len(completions)} "
            f"completions (each alone scored without error; the first is {_excerpt(completions[0])}).\n  Fix the reward class."
        ) from batch_error
    if failures:
        i, error = failures[0]
        log.warning(
            "%s failed on %d of %d completions, scored 0; the first: %s: %s on %s",
            label, len(failures), len(completions), type(error).__name__, error, _excerpt(completions[i]),
        )
    return scores, len(failures)


def as_scores(returned) -> list:
    """A reward's return value as a list of Python numbers: a list or tuple of floats, ints, 0-d tensors or numpy
    scalars, or a tensor or numpy array of one score per completion (shape [N], or [N, 1])."""
    if hasattr(returned, "tolist") and hasattr(returned, "shape"):  # torch.Tensor, numpy.ndarray
        shape = tuple(returned.shape)
        if len(shape) > 1 and all(d == 1 for d in shape[1:]):
            returned = returned.reshape(shape[0])
        returned = returned.tolist()
        return returned if isinstance(returned, list) else [returned]
    return [s.item() if (hasattr(s, "item") and getattr(s, "shape", None) == ()) or _numpy_scalar(s) else s
            for s in returned]


def _numpy_scalar(value) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "item")


def _finite(score) -> bool:
    return isinstance(score, numbers.Real) and not isinstance(score, complex) and math.isfinite(score)


def _excerpt(text: str, limit: int = 200) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def weighted_sum(rewards: list[Reward], per_reward: torch.Tensor) -> torch.Tensor:
    """The reward GRPO trains on: each reward's scores times its own ``weight``, summed. per_reward: [R, N] → [N]."""
    weights = torch.tensor([r.weight for r in rewards], dtype=per_reward.dtype).unsqueeze(1)  # [R, 1]
    return (per_reward * weights).sum(dim=0)
