"""Stages 1–2 of a GRPO step: a batch of problems → a scored rollout.

``RolloutProducer`` asks the engine for G completions per problem with a per-step seed, scores them with the
rewards, and owns what decides which rollout a step trains on: one-step-off generation (the rollout asked for
during the previous step), the difficulty filter (problems skipped before generating) and dynamic sampling (more
rounds until the batch holds informative groups). It times each stage. It never touches the policy's weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from torch import Tensor

from r1lit.data.batch import ProblemBatch
from r1lit.errors import ConfigError, R1LitError
from r1lit.grpo.advantages import flat_groups
from r1lit.grpo.types import ScoredRollout
from r1lit.producer.difficulty import DifficultyFilter
from r1lit.producer.dynamic_sampling import DynamicSampling, Filled
from r1lit.producer.one_step_off import OneStepOff, Pending
from r1lit.rewards.base import Reward
from r1lit.rewards.scoring import score_completions, weighted_sum
from r1lit.rollout.agreement import agree, max_per_engine
from r1lit.rollout.background import BackgroundGeneration, finished
from r1lit.rollout.engine import RolloutEngine, engine_failure
from r1lit.rollout.types import SamplingConfig
from r1lit.training.distributed import gather_objects, max_over_ranks
from r1lit.training.seeds import dynamic_sampling_seed, rollout_seed


@dataclass
class StageTimes:
    """Seconds spent in stages 1 and 2 of one step (waiting for a rollout in flight counts as generating)."""

    generate: float = 0.0
    score: float = 0.0
    skipped: int = 0  # problems the difficulty filter left out before generating
    per_engine: dict[int, float] = field(default_factory=dict)  # engine index → its slowest rank's generate

    def metrics(self) -> dict[str, float]:
        """``time/generate`` and ``time/score`` (this rank's), and with several engines ``time/generate/engine_<i>``:
        the step's generation time of engine i's slowest rank, so an engine that lags shows."""
        several = len(self.per_engine) > 1
        per_engine = {f"time/generate/engine_{i}": seconds for i, seconds in self.per_engine.items()} if several else {}
        return {"time/generate": self.generate, "time/score": self.score, **per_engine}


@dataclass
class ProducedRollout:
    """What stages 1–2 hand the optimisation: the groups to train on and everything generated to find them."""

    scored: ScoredRollout  # the B groups trained on
    pool: ScoredRollout  # every group generated this step (dynamic sampling's dropped groups too)
    trained_groups: Tensor | None  # [B] bool: False for dynamic sampling's filler groups (no loss); None = all
    filled: Filled | None  # dynamic sampling's account of the step, or None without it
    staleness: int  # optimizer updates between the sampling weights and the weights that train on them
    times: StageTimes


class RolloutProducer:
    """Turns a ``ProblemBatch`` into a ``ProducedRollout`` on one rank."""

    def __init__(self, engine: RolloutEngine, rewards: list[Reward], sampling: SamplingConfig, num_generations: int,
                 steps_per_rollout: int = 1, dynamic_sampling: DynamicSampling | None = None,
                 difficulty_filter: DifficultyFilter | None = None, one_step_off: bool = False):
        """
        Args:
            engine: generates the completions.
            rewards: score them (weighted sum).
            sampling: the sampling settings; ``sampling.seed`` is the base of every per-step seed.
            num_generations: G, completions per problem.
            steps_per_rollout: optimizer steps taken on each rollout (μ): the step counter's stride.
            dynamic_sampling: refill the batch with informative groups; None = off.
            difficulty_filter: skip problems whose last group was flat; needs ``dynamic_sampling``.
            one_step_off: ask for the next step's rollout while this one trains; needs a ``BackgroundGeneration``
                engine and batches that carry their successor.
        """
        if difficulty_filter is not None and dynamic_sampling is None:
            raise ConfigError("model.difficulty_filter skips problems that dynamic sampling replaces: set "
                              "model.dynamic_sampling too (e.g. {class_path: DynamicSampling})")
        if one_step_off and not isinstance(engine, BackgroundGeneration):
            raise ConfigError(f"model.async_generation generates the next rollout while the trainer updates the weights: "
                              f"{type(engine).__name__} cannot (it shares the trainer's weights or process); use "
                              "model.engine: VLLMServerEngine, or set async_generation: false")
        self.engine, self.rewards, self.sampling, self.num_generations = engine, rewards, sampling, num_generations
        self.steps_per_rollout = steps_per_rollout
        self.dynamic_sampling, self.difficulty_filter = dynamic_sampling, difficulty_filter
        self.one_step_off = OneStepOff() if one_step_off else None

    def produce(self, batch: ProblemBatch, step: int, rank: int,
                draw_extra: Callable[[int], ProblemBatch] | None = None) -> ProducedRollout:
        """Stages 1–2 for ``batch`` at optimizer step ``step``. draw_extra(count): more problems for dynamic
        sampling (the datamodule's extra stream)."""
        times = StageTimes()
        pending = self.one_step_off.take(batch.problems) if self.one_step_off is not None else None
        if pending is None:
            pending = self._ask(batch, rollout_seed(self.sampling.seed, step, rank), step, times)
        staleness = step - pending.weights_step
        if self.one_step_off is not None and batch.next is not None:  # next step's rollout, while this one trains
            next_seed = rollout_seed(self.sampling.seed, step + self.steps_per_rollout, rank)
            self.one_step_off.pending = self._ask(batch.next, next_seed, step, None)
        scored = self._score(pending, times)
        if self.dynamic_sampling is None:
            return ProducedRollout(scored, scored, None, None, staleness, times)

        def more(round_: int, count: int) -> ScoredRollout:
            if draw_extra is None:
                raise ConfigError("model.dynamic_sampling draws extra problems from the datamodule: use MathDataModule")
            seed = dynamic_sampling_seed(self.sampling.seed, step, rank, round_)
            return self._score(self._ask(draw_extra(count), seed, step, times), times)

        filled = self.dynamic_sampling.fill(scored, len(batch), more, max_over_ranks)
        if self.difficulty_filter is not None:
            self._remember_difficulty(filled.pool, step)
        return ProducedRollout(filled.selected, filled.pool, filled.trained, filled, staleness, times)

    def _ask(self, batch: ProblemBatch, seed: int, step: int, times: StageTimes | None) -> Pending:
        """Ask the engine for G completions of each problem of ``batch`` (less those the difficulty filter skips):
        in the foreground with ``times`` (seconds added to them), in the background (one-step-off) without."""
        problems, skipped = list(batch.problems), 0
        batch = ProblemBatch(batch.problems, batch.answers, batch.prompts, batch.prompt_ids)  # without a successor
        if self.difficulty_filter is not None:
            skip = self.difficulty_filter.skips(batch.problems, step)
            batch = batch.take([i for i, s in enumerate(skip) if not s])
            skipped = sum(skip)
        weights_step = self.engine.weights_step if self.engine.weights_step is not None else step
        start, G = time.perf_counter(), self.num_generations
        try:
            with engine_failure(self.engine, "generating"):
                if times is None:
                    future = self.engine.submit(batch.prompt_ids, n=G, sampling=self.sampling, seed=seed)
                else:
                    future = finished(self.engine.generate(batch.prompt_ids, n=G, sampling=self.sampling, seed=seed))
        except R1LitError as error:  # raised on every rank together, in _score
            future = Future()
            future.set_exception(error)
        if times is not None:
            times.generate += time.perf_counter() - start
        return Pending(problems, batch, weights_step, future, skipped)

    def _score(self, pending: Pending, times: StageTimes) -> ScoredRollout:
        """Score a rollout asked for (waiting for it if it is still being generated: that wait counts as generation).
        Every rank comes here once per generation round: ranks learn whether every engine delivered (``agree``)
        and each engine's generation time so far this step."""
        start, G, batch = time.perf_counter(), self.num_generations, pending.batch
        failure = None
        try:
            with engine_failure(self.engine, "generating"):
                rollout = pending.future.result()
        except R1LitError as error:
            failure = error
        generated = time.perf_counter()
        seconds = times.generate + generated - start
        times.per_engine = max_per_engine(agree(self.engine, failure, "generating", seconds))
        prompts = [p for p in batch.prompts for _ in range(G)]  # [N]
        answers = [a for a in batch.answers for _ in range(G)]  # [N]
        per_reward, errors = score_completions(  # [R, N], [R]
            self.rewards, prompts, rollout.texts, answers, rollout.completion_lengths.tolist(), self.sampling.max_tokens
        )
        times.generate += generated - start
        times.score += time.perf_counter() - generated
        times.skipped += pending.skipped
        return ScoredRollout(batch, rollout.to("cpu"), per_reward, weighted_sum(self.rewards, per_reward), errors)

    def _remember_difficulty(self, pool: ScoredRollout, step: int) -> None:
        """Tell the difficulty filter which problems came out flat; every rank learns every rank's results."""
        seen = (pool.batch.problems, flat_groups(pool.rewards, self.num_generations).tolist())
        for problems, flat in gather_objects(seen):
            self.difficulty_filter.update(problems, flat, step)

    def state_dict(self, world_size: int) -> dict:
        """Checkpoint entries: the difficulty filter's memory and every rank's rollout in flight (a collective
        with one-step-off: every rank calls it)."""
        state = {}
        if self.difficulty_filter is not None:
            state["difficulty_filter"] = self.difficulty_filter.state_dict()
        if self.one_step_off is not None:  # see r1lit.producer.one_step_off
            state["r1lit_in_flight"] = {"world_size": world_size, "ranks": gather_objects(self.one_step_off.state_dict())}
        return state

    def load_state_dict(self, checkpoint: dict, rank: int, world_size: int) -> None:
        if self.difficulty_filter is not None:
            self.difficulty_filter.load_state_dict(checkpoint.get("difficulty_filter", {}))
        in_flight = checkpoint.get("r1lit_in_flight")
        if self.one_step_off is not None and in_flight is not None:
            self.one_step_off.load_state_dict(in_flight, rank, world_size)
