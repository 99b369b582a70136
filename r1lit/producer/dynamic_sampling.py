"""DAPO's dynamic sampling: train only on groups whose rewards differ, drawing more problems to fill the batch.

A group whose G rewards are all equal has zero advantage and teaches nothing. With ``DynamicSampling`` the step
keeps the informative groups of its batch and, while it holds fewer than ``batch_size`` of them, draws
``round_size`` more problems (from the datamodule's extra stream, which the checkpoint's data position counts),
generates and scores them, up to ``max_num_gen_batches`` generation rounds in all (verl's name; the first round
included). When the cap is hit the step trains on the informative groups it found, and the batch is topped up with
zero-spread groups that get no loss (their rows are masked out, so they change neither the gradient nor the
loss's normalisation): every rank still trains on ``batch_size`` groups, shapes agree across ranks, and
``dynamic_sampling/capped`` says it happened.

Several ranks: each rank fills its own share from its own stream; the number of rounds is the same on every rank
(a rank keeps generating, and discards, while another rank is still short), so engines whose ``generate`` is a
collective (rank 0 serving every rank) stay in step, and every rank's stream advances alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from r1lit.data.batch import ProblemBatch
from r1lit.errors import ConfigError
from r1lit.grpo.advantages import flat_groups
from r1lit.grpo.types import ScoredRollout
from r1lit.rollout.types import Rollout

__all__ = ["DynamicSampling", "Filled", "pick_groups", "concat_scored", "take_groups", "concat_rollouts"]


def pick_groups(informative: Tensor, batch_size: int) -> tuple[list[int], list[bool]]:
    """Which groups of the pool to train on, in pool order: the first ``batch_size`` informative ones; when there
    are fewer, all of them followed by the first uninformative ones as filler. Returns (group indices, trained
    flag per pick: False for filler)."""
    informative = informative.tolist()
    picks = [g for g, ok in enumerate(informative) if ok][:batch_size]
    filler = [g for g, ok in enumerate(informative) if not ok][: batch_size - len(picks)]
    return picks + filler, [True] * len(picks) + [False] * len(filler)


def concat_rollouts(rollouts: list[Rollout]) -> Rollout:
    """Rollouts one after the other, prompts re-padded on the left and completions on the right."""
    if len(rollouts) == 1:
        return rollouts[0]
    P = max(r.prompt_ids.shape[1] for r in rollouts)
    C = max(r.completion_ids.shape[1] for r in rollouts)

    def left(t: Tensor, width: int) -> Tensor:
        return torch.nn.functional.pad(t, (width - t.shape[1], 0))

    def right(t: Tensor, width: int) -> Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]))

    logprobs = [r.sampler_logprobs for r in rollouts]
    return Rollout(
        prompt_ids=torch.cat([left(r.prompt_ids, P) for r in rollouts]),
        prompt_mask=torch.cat([left(r.prompt_mask, P) for r in rollouts]),
        completion_ids=torch.cat([right(r.completion_ids, C) for r in rollouts]),
        completion_mask=torch.cat([right(r.completion_mask, C) for r in rollouts]),
        texts=[t for r in rollouts for t in r.texts],
        truncated=torch.cat([r.truncated for r in rollouts]),
        num_generations=rollouts[0].num_generations,
        sampler_logprobs=None if any(lp is None for lp in logprobs) else torch.cat([right(lp, C) for lp in logprobs]),
    )


def concat_scored(parts: list[ScoredRollout]) -> ScoredRollout:
    """Rounds one after the other (groups keep their order)."""
    if len(parts) == 1:
        return parts[0]
    return ScoredRollout(
        batch=ProblemBatch.concat([p.batch for p in parts]),
        rollout=concat_rollouts([p.rollout for p in parts]),
        per_reward=torch.cat([p.per_reward for p in parts], dim=1),
        rewards=torch.cat([p.rewards for p in parts]),
        errors=sum(p.errors for p in parts),
    )


def take_groups(scored: ScoredRollout, groups: list[int]) -> ScoredRollout:
    """The given groups of a round (or pool), in the given order."""
    G = scored.rollout.num_generations
    if groups == list(range(scored.num_groups)):
        return scored
    rows = torch.tensor([g * G + i for g in groups for i in range(G)], dtype=torch.long)
    r = scored.rollout
    pick = lambda t: None if t is None else t[rows.to(t.device)]  # noqa: E731
    rollout = Rollout(
        prompt_ids=pick(r.prompt_ids), prompt_mask=pick(r.prompt_mask), completion_ids=pick(r.completion_ids),
        completion_mask=pick(r.completion_mask), texts=[r.texts[i] for i in rows.tolist()], truncated=pick(r.truncated),
        num_generations=G, sampler_logprobs=pick(r.sampler_logprobs),
    )
    return ScoredRollout(
        batch=scored.batch.take(groups),
        rollout=rollout, per_reward=scored.per_reward[:, rows], rewards=scored.rewards[rows], errors=scored.errors,
    )


@dataclass
class Filled:
    """What ``DynamicSampling.fill`` returns: the groups to train on and what it took to find them."""

    selected: ScoredRollout  # batch_size groups
    trained: Tensor  # [batch_size] bool, False for filler groups (no loss)
    pool: ScoredRollout  # every group generated this step, in draw order
    rounds: int  # generation rounds, the first included
    kept: int  # informative groups trained on
    dropped: int  # zero-spread groups generated
    capped: bool  # the cap ended the search with fewer than batch_size informative groups

    def metrics(self) -> dict[str, float]:
        """Groups kept (informative, trained) and dropped (flat), generation rounds, and whether the cap ended the
        search short; per rank."""
        return {"dynamic_sampling/groups_kept": self.kept, "dynamic_sampling/groups_dropped": self.dropped,
                "dynamic_sampling/rounds": self.rounds, "dynamic_sampling/capped": float(self.capped)}


class DynamicSampling:
    """DAPO's dynamic sampling (verl's ``filter_groups``): drop zero-spread groups and generate more problems until
    the batch holds ``batch_size`` informative groups or ``max_num_gen_batches`` rounds have run."""

    def __init__(self, max_num_gen_batches: int = 4, round_size: int | None = None):
        """
        Args:
            max_num_gen_batches: most generation rounds per step, the first included (verl's
                ``max_num_gen_batches``); at the cap the step trains on the informative groups it found.
            round_size: problems drawn per rank in each extra round; None = ``data.batch_size``.
        """
        if max_num_gen_batches < 1:
            raise ConfigError(f"dynamic_sampling.max_num_gen_batches must be >= 1, got {max_num_gen_batches}")
        if round_size is not None and round_size < 1:
            raise ConfigError(f"dynamic_sampling.round_size must be >= 1 or None, got {round_size}")
        self.max_num_gen_batches, self.round_size = max_num_gen_batches, round_size

    def fill(
        self, first: ScoredRollout, batch_size: int, more: Callable[[int, int], ScoredRollout],
        most_short: Callable[[int], int],
    ) -> Filled:
        """Grow the pool from ``first`` until it holds ``batch_size`` informative groups.

        more(round, count): ``count`` new problems generated and scored (round = 1, 2, …).
        most_short(short): the largest shortfall over all ranks given this rank's (identity on one rank); every
        rank calls it once per round, so it may be a collective.
        """
        G = first.rollout.num_generations
        parts, informative = [first], [~flat_groups(first.rewards, G)]
        while True:
            short = max(batch_size - int(sum(int(i.sum()) for i in informative)), 0)
            if most_short(short) == 0 or len(parts) >= self.max_num_gen_batches:
                break
            part = more(len(parts), self.round_size or batch_size)
            parts.append(part)
            informative.append(~flat_groups(part.rewards, G))
        pool, useful = concat_scored(parts), torch.cat(informative)
        picks, trained = pick_groups(useful, batch_size)
        kept = sum(trained)
        return Filled(
            selected=take_groups(pool, picks), trained=torch.tensor(trained), pool=pool, rounds=len(parts),
            kept=kept, dropped=int((~useful).sum()), capped=kept < batch_size,
        )
