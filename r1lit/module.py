"""GRPOModule: one GRPO step per batch of problems, with manual optimisation.

The variant that runs: for each of B problems sample G completions (``engine``), score them with rule-based
rewards (weighted sum), turn rewards into group-relative advantages (``scale_rewards``), then take
``num_iterations`` (μ) optimizer steps on the same rollout with the clipped surrogate of ``loss`` (GRPO, BNPO,
Dr. GRPO or DAPO weighting; k3 KL to a frozen reference when ``loss.beta > 0``), each step accumulating gradients
over micro-batches. With μ = 1 the "old" log-probs are the current ones detached, so the ratio is exactly 1.

Launch: ``r1lit fit --config configs/qwen0.5b.yaml`` (GPUs) or ``make run`` (embedded model on CPU).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from r1lit.producer.difficulty import DifficultyFilter
from r1lit.producer.dynamic_sampling import DynamicSampling, Scored, zero_spread
from r1lit.grpo.entropy import high_entropy_mask
from r1lit.errors import ConfigError
from r1lit.grpo.importance_sampling import ImportanceSampling
from r1lit.grpo.losses import (
    GRPOLoss,
    LossStats,
    group_advantages,
    trained_rows,
)
from r1lit.policy.logprobs import CompletionLogprobs
from r1lit.policy.loading import disable_dropout_in_model, load_policy, load_tokenizer
from r1lit.training.nonfinite import NonFiniteGuard
from r1lit.producer.one_step_off import OneStepOff, Pending
from r1lit.training.optim import CosineWithWarmup, default_optimizer
from r1lit.rewards.accuracy import AccuracyReward
from r1lit.grading.answers import extract_answer
from r1lit.rewards.base import Reward
from r1lit.rewards.scoring import score_completions, weighted_sum
from r1lit.rollout.background import BackgroundGeneration, finished
from r1lit.rollout.engine import RolloutEngine, engine_failure
from r1lit.rollout.hf import HFEngine
from r1lit.training.seeds import derive_seed
from r1lit.rollout.types import Rollout, SamplingConfig
from r1lit.training.distributed import gather_objects, gather_uneven, max_over_ranks
from r1lit.grpo.groups import scored_groups
from r1lit.grpo.metrics import (
    as_tensors,
    dynamic_sampling_metrics,
    optimise_metrics,
    rollout_metrics,
    sampling_mismatch,
)
from r1lit.eval.pass_at_k import PassAtK
from r1lit.training.deepspeed import configure_deepspeed, deepspeed_engine, gradient_norm, is_deepspeed, mark_accumulation_boundary

DYNAMIC_SAMPLING_KEY = 0xD5  # sampling seeds of dynamic sampling's extra rounds: (seed, step, rank, key, round)


def check_batch_layout(batch_size: int, num_generations: int, micro_batch_size: int) -> None:
    """The rollout (batch_size × num_generations completions) must split into whole micro-batches."""
    if num_generations < 2:
        raise ConfigError(f"model.num_generations={num_generations}: GRPO compares completions within a group; use 2 or more")
    completions = batch_size * num_generations
    if micro_batch_size < 1 or completions % micro_batch_size:
        divisors = [d for d in range(1, completions + 1) if completions % d == 0]
        raise ConfigError(
            f"model.micro_batch_size={micro_batch_size} does not divide the rollout: data.batch_size × "
            f"model.num_generations = {batch_size} × {num_generations} = {completions} completions. "
            f"Pick a micro_batch_size from {divisors}."
        )


class GRPOModule(L.LightningModule):
    """Coordinates rollout → score → advantage → optimise → log; the formulas live in ``r1lit.grpo.losses``."""

    def __init__(
        self,
        model_name_or_path: str,
        rewards: list[Reward],
        loss: GRPOLoss | None = None,
        engine: RolloutEngine | None = None,
        sampling: SamplingConfig = SamplingConfig(),
        num_generations: int = 16,
        scale_rewards: Literal["group", "batch", "none"] = "group",
        num_iterations: int = 1,
        importance_sampling: ImportanceSampling | None = None,
        micro_batch_size: int = 8,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        max_grad_norm: float | None = 1.0,
        gradient_checkpointing: bool = False,
        torch_dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = None,
        attn_implementation: str | None = None,
        logprob_chunk_tokens: int | None = 256,
        bf16_reference: bool = True,
        max_consecutive_nonfinite: int = 3,
        mask_truncated_completions: bool = False,
        dynamic_sampling: DynamicSampling | None = None,
        entropy_coef: float = 0.0,
        top_entropy_quantile: float = 1.0,
        val_pass_at_k: PassAtK | None = None,
        difficulty_filter: DifficultyFilter | None = None,
        disable_dropout: bool = True,
        async_generation: bool = False,
    ):
        """
        Args:
            model_name_or_path: policy to train: hub id, local folder, or ``embedded:smollm2-135m-instruct``.
            rewards: rule-based rewards, summed with their weights (``AccuracyReward``, ``FormatReward``, your own).
            loss: the objective and its weighting: ``GRPOLoss`` (None = its defaults), ``BNPOLoss``, ``DrGRPOLoss`` or
                ``DAPOLoss``; its ``beta`` > 0 adds the KL penalty and keeps a frozen reference copy.
            engine: generates the completions, chosen here and only here: None = ``HFEngine`` (the policy's own
                generate); ``VLLMEngine`` (vLLM in process: cpu, colocate) or ``VLLMServerEngine`` (vLLM in its own
                process on the reserved GPU, or attached by base_url), both run by the ``VLLMRollout`` callback.
            sampling: temperature, top_p, top_k, min_p, repetition_penalty and max_tokens (the max completion length).
            num_generations: G, completions sampled per problem.
            scale_rewards: divide centred rewards by the group's std (``group``, GRPO), the batch's std (``batch``)
                or not at all (``none``, Dr. GRPO).
            num_iterations: μ, optimizer steps taken on each rollout.
            importance_sampling: truncated importance-sampling correction for engines that return their own
                log-probs (vLLM); None = no correction. Mismatch metrics are logged either way.
            micro_batch_size: completions per forward/backward; must divide data.batch_size × num_generations.
            optimizer: the optimizer over the policy's parameters (e.g. ``{class_path: torch.optim.AdamW, init_args:
                {lr: 2.0e-5}}``); None = the seed recipe's AdamW (lr 3e-6, betas (0.9, 0.99), no weight decay).
            scheduler: the learning-rate schedule, stepped once per optimizer step; a ``CosineWithWarmup`` without its
                own ``total_steps`` is fitted to the run's optimizer steps. None = ``CosineWithWarmup`` without warmup
                (the seed's cosine to 0).
            max_grad_norm: clip the gradient's global norm to this (None = no clipping).
            gradient_checkpointing: recompute activations in backward to save memory.
            torch_dtype: dtype the policy (and its reference) is loaded in (transformers' ``torch_dtype``): None =
                float32 weights (train in ``bf16-mixed`` with them); ``bfloat16`` halves the weights' memory (pure bf16
                training); ``auto`` = the checkpoint's own dtype.
            attn_implementation: transformers' attention kernel (``sdpa``, ``eager``, ``flash_attention_2`` where
                installed); None = transformers' default.
            logprob_chunk_tokens: tokens per chunk when the LM head turns hidden states into log-probs: the full
                vocabulary's logits exist for one chunk at a time (forward and backward), never for a whole
                micro-batch. Models whose logits are more than head(decoder(x)) keep their full logits; None =
                always the full logits (the path before chunking, for comparisons).
            bf16_reference: under ``bf16-mixed``, keep the frozen reference (``loss.beta`` > 0) in bfloat16: half its
                memory; its matmuls already ran in bf16 under autocast (the mean KL moves by < 2 %, tests/unit/policy/test_logprobs.py).
            max_consecutive_nonfinite: an update whose loss or gradient norm is NaN/inf is skipped (counted in
                ``train/skipped_steps``); this many in a row stop the run with an error.
            mask_truncated_completions: completions cut at ``sampling.max_tokens`` (no EOS) get no loss (TRL's
                name; DAPO's overlong filtering). They still count in their group's advantages.
            dynamic_sampling: DAPO's dynamic sampling: drop groups whose rewards are all equal and generate more
                problems until the batch is full of informative groups (``DynamicSampling``); None = off.
            entropy_coef: entropy bonus: subtracts entropy_coef × the token-weighted mean entropy of the trained
                tokens from the loss (0 = off).
            top_entropy_quantile: train the policy-gradient term only on this top fraction of the rollout's tokens
                by entropy (TRL's name; 0.2 = the 20 % highest-entropy tokens; 1.0 = all). Logs ``entropy/trained``.
            val_pass_at_k: validation by answer equivalence alone: ``val/pass@k`` and ``val/maj@k`` from n samples
                per held-out problem (``PassAtK``), graded by the first ``AccuracyReward``; None = pass@1 only.
            difficulty_filter: skip, before generating, problems whose last group (recently) had zero reward
                spread (``DifficultyFilter``); needs ``dynamic_sampling``, which draws their replacements.
            disable_dropout: turn dropout off in the policy and the reference (TRL's ``disable_dropout``). With it on,
                log-probs of the same weights differ between passes: step 1's ``kl`` is not 0 and the ratio is not 1.
            async_generation: one-step-off: the engine samples the next step's rollout while this step trains
                (from weights one update older; ``importance_sampling`` corrects for it, ``rollout/staleness`` logs
                it). Needs an engine that generates apart from the trainer (``VLLMServerEngine``).
        """
        super().__init__()
        self.automatic_optimization = False
        if not rewards:
            raise ConfigError("model.rewards is empty: add at least one reward, e.g. {class_path: AccuracyReward}")
        check_batch_layout(1, num_generations, 1)
        if num_iterations < 1 or micro_batch_size < 1:
            raise ConfigError("model.num_iterations and model.micro_batch_size must be >= 1")
        if not 0.0 < top_entropy_quantile <= 1.0 or entropy_coef < 0:
            raise ConfigError(f"model.top_entropy_quantile must be in (0, 1] and entropy_coef >= 0, got "
                              f"{top_entropy_quantile} and {entropy_coef}")
        self.save_hyperparameters(ignore=["rewards", "loss", "engine", "sampling", "importance_sampling", "dynamic_sampling",
                                         "val_pass_at_k", "difficulty_filter", "optimizer", "scheduler"])
        self.make_optimizer, self.make_scheduler = optimizer, scheduler
        self.rewards, self.sampling = list(rewards), sampling
        self.loss = loss if loss is not None else GRPOLoss()
        self.engine = engine if engine is not None else HFEngine()
        self.num_generations, self.scale_rewards = num_generations, scale_rewards
        self.num_iterations, self.micro_batch_size = num_iterations, micro_batch_size
        self.importance_sampling = importance_sampling
        self.mask_truncated_completions, self.dynamic_sampling = mask_truncated_completions, dynamic_sampling
        self.entropy_coef, self.top_entropy_quantile = entropy_coef, top_entropy_quantile
        if val_pass_at_k is not None and not any(isinstance(r, AccuracyReward) for r in rewards):
            raise ConfigError("model.val_pass_at_k grades by answer equivalence: add an AccuracyReward to model.rewards")
        self.val_pass_at_k = val_pass_at_k
        if difficulty_filter is not None and dynamic_sampling is None:
            raise ConfigError("model.difficulty_filter skips problems that dynamic sampling replaces: set "
                              "model.dynamic_sampling too (e.g. {class_path: DynamicSampling})")
        self.difficulty_filter = difficulty_filter
        if async_generation and not isinstance(self.engine, BackgroundGeneration):
            raise ConfigError(f"model.async_generation generates the next rollout while the trainer updates the weights: "
                              f"{type(self.engine).__name__} cannot (it shares the trainer's weights or process); use "
                              "model.engine: VLLMServerEngine, or set async_generation: false")
        self.one_step_off = OneStepOff() if async_generation else None
        if logprob_chunk_tokens is not None and logprob_chunk_tokens < 1:
            raise ConfigError(f"model.logprob_chunk_tokens must be >= 1 (or null for full logits), got {logprob_chunk_tokens}")
        self.completion_logprobs = CompletionLogprobs(sampling.temperature, logprob_chunk_tokens or 1,
                                                      chunked=logprob_chunk_tokens is not None)
        self.nonfinite = NonFiniteGuard(max_consecutive_nonfinite)
        self.tokenizer = load_tokenizer(model_name_or_path)
        self.policy = load_policy(model_name_or_path, torch_dtype, attn_implementation)
        if disable_dropout:
            disable_dropout_in_model(self.policy)  # before the reference is copied from it
        if gradient_checkpointing:
            self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # The reference is kept out of the module's children: it is neither trained nor saved in checkpoints.
        self._ref = [copy.deepcopy(self.policy).eval().requires_grad_(False)] if self.loss.beta > 0 else []
        # Running totals over all ranks, kept in checkpoints: completions generated (what callbacks call "samples
        # seen") and prompt + completion tokens processed (TRL's ``num_tokens``).
        self.samples_seen, self.num_tokens = 0, 0

    @property
    def ref_model(self) -> torch.nn.Module | None:
        return self._ref[0] if self._ref else None

    # ---- Lightning hooks ------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "batch_size"):
            check_batch_layout(datamodule.batch_size, self.num_generations, self.micro_batch_size)
        if is_deepspeed(self.trainer.strategy):  # before the strategy builds the engine from its config
            configure_deepspeed(self.trainer.strategy, self.hparams.max_grad_norm, self.micro_batch_size)
        self.engine.bind(self.policy, self.tokenizer)
        if self.one_step_off is not None:
            if not hasattr(datamodule, "lookahead"):
                raise ConfigError("model.async_generation needs each batch's successor from the data: use MathDataModule")
            datamodule.lookahead = True

    def on_fit_start(self) -> None:
        if self.ref_model is not None:
            bf16 = self.hparams.bf16_reference and str(self.trainer.precision) == "bf16-mixed"
            self.ref_model.to(self.device, dtype=torch.bfloat16 if bf16 else None)
        self.policy.train()

    def teardown(self, stage: str) -> None:
        for reward in self.rewards:
            reward.close()  # worker processes; they start again if the rewards are used again

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # running totals and skipped-update counts survive a resume
        checkpoint["r1lit_counters"] = {"samples_seen": self.samples_seen, "num_tokens": self.num_tokens}
        checkpoint["nonfinite"] = self.nonfinite.state_dict()
        if self.difficulty_filter is not None:
            checkpoint["difficulty_filter"] = self.difficulty_filter.state_dict()
        if self.one_step_off is not None:  # every rank's rollout in flight (see r1lit.producer.one_step_off)
            checkpoint["r1lit_in_flight"] = {"world_size": self.trainer.world_size,
                                             "ranks": gather_objects(self.one_step_off.state_dict())}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        counters = checkpoint.get("r1lit_counters", {})
        self.samples_seen, self.num_tokens = counters.get("samples_seen", 0), counters.get("num_tokens", 0)
        self.nonfinite.load_state_dict(checkpoint.get("nonfinite", {}))
        if self.difficulty_filter is not None:
            self.difficulty_filter.load_state_dict(checkpoint.get("difficulty_filter", {}))
        in_flight = checkpoint.get("r1lit_in_flight")
        if self.one_step_off is not None and in_flight is not None:
            self.one_step_off.load_state_dict(in_flight, self.global_rank, self.trainer.world_size)

    def configure_optimizers(self):
        optimizer = (self.make_optimizer or default_optimizer)(self.policy.parameters())
        total = self.trainer.max_steps
        if total is None or total < 0:
            total = int(self.trainer.estimated_stepping_batches) * self.num_iterations
        schedule = (self.make_scheduler or CosineWithWarmup)(optimizer)
        if isinstance(schedule, CosineWithWarmup) and schedule.total_steps is None:
            schedule.fit_to(total)  # the YAML cannot know the run's length
        return [optimizer], [{"scheduler": schedule, "interval": "step"}]

    # ---- the GRPO step --------------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, list], batch_idx: int) -> dict:
        start = time.perf_counter()
        G, timers = self.num_generations, {"generate": 0.0, "score": 0.0, "skipped": 0}
        seed = derive_seed(self.sampling.seed, self.global_step, self.global_rank)  # differs per rank, same on resume
        pending = self.one_step_off.take(batch["problem"]) if self.one_step_off is not None else None
        if pending is None:
            pending = self._ask_rollout(batch, seed, timers)
        staleness = self.global_step - pending.weights_step  # updates between the sampling weights and these
        if self.one_step_off is not None and batch.get("next") is not None:  # next step's rollout, while this one trains
            next_seed = derive_seed(self.sampling.seed, self.global_step + self.num_iterations, self.global_rank)
            self.one_step_off.pending = self._ask_rollout(batch["next"], next_seed, None)
        scored = self._score_rollout(pending, timers)
        pool, trained_groups, filled = scored, None, None
        if self.dynamic_sampling is not None:
            filled = self.dynamic_sampling.fill(scored, len(batch["prompt"]), self._more_problems(timers), max_over_ranks)
            scored, pool, trained_groups = filled.selected, filled.pool, filled.trained
        rollout, rewards = scored.rollout.to(self.device), scored.rewards
        advantages = group_advantages(rewards, G, self.scale_rewards).to(self.device)  # [N]
        trained = trained_rows(rollout.truncated, G, trained_groups, self.mask_truncated_completions)  # [N] bool
        scored_at = time.perf_counter()

        stats = self._optimise(rollout, advantages, rollout.completion_mask * trained.unsqueeze(1).to(self.device))
        done = time.perf_counter()

        generated = pool.rollout  # every completion generated this step (dynamic sampling's dropped groups too)
        counts = torch.stack([generated.prompt_mask.sum() + generated.completion_mask.sum(),
                              torch.tensor(len(generated.texts))]).float().to(self.device)  # [tokens, completions]
        lengths, truncated = generated.completion_lengths.to(self.device), generated.truncated.to(self.device)  # [N'], [N']
        if self.trainer.world_size > 1:
            counts = self.all_gather(counts).sum(dim=0)
            lengths, truncated = gather_uneven(lengths), gather_uneven(truncated.long())
        self.num_tokens += int(counts[0])
        self.samples_seen += int(counts[1])

        if self.difficulty_filter is not None:
            self._remember_difficulty(pool)
        metrics = as_tensors({
            **rollout_metrics(pool, self.rewards, lengths, truncated),
            **({"difficulty_filter/skipped": timers["skipped"]} if self.difficulty_filter is not None else {}),
            **dynamic_sampling_metrics(filled),
            "num_tokens": self.num_tokens,
            **optimise_metrics(stats, self.loss.beta),
            "train/skipped_steps": self.nonfinite.skipped,
            "step_time": done - start,
            "time/generate": timers["generate"],
            "time/score": timers["score"],
            "time/optimise": done - scored_at,
            "rollout/staleness": staleness,
        }, self.device)
        sync, size = self.trainer.world_size > 1, len(batch["prompt"])
        self.log("reward", metrics.pop("reward"), prog_bar=True, on_step=True, sync_dist=sync, batch_size=size)
        self.log_dict(metrics, on_step=True, on_epoch=False, sync_dist=sync, batch_size=size)
        groups = scored_groups(scored.batch, scored.rollout, scored.per_reward, scored.rewards, advantages,
                               [r.name for r in self.rewards])
        return {"groups": groups, "rollout": rollout}  # callbacks: what was trained on (tensors on the device)

    def _generate_and_score(self, batch: dict[str, list], seed: int, timers: dict[str, float]) -> Scored:
        """G completions for each problem of ``batch`` (less those the difficulty filter skips), scored; adds the
        seconds spent, and the problems skipped, to ``timers``."""
        return self._score_rollout(self._ask_rollout(batch, seed, timers), timers)

    def _ask_rollout(self, batch: dict[str, list], seed: int, timers: dict[str, float] | None) -> Pending:
        """Ask the engine for G completions of each problem of ``batch`` (less those the difficulty filter skips):
        in the foreground with ``timers`` (seconds added to them), in the background (one-step-off) without."""
        problems, skipped = list(batch["problem"]), 0
        batch = {key: values for key, values in batch.items() if key != "next"}
        if self.difficulty_filter is not None:
            skip = self.difficulty_filter.skips(batch["problem"], self.global_step)
            batch = {key: [v for v, s in zip(values, skip) if not s] for key, values in batch.items()}
            skipped = sum(skip)
        weights_step = self.engine.weights_step if self.engine.weights_step is not None else self.global_step
        start, G = time.perf_counter(), self.num_generations
        with engine_failure(self.engine, "generating"):
            if timers is None:
                future = self.engine.submit(batch["prompt_ids"], n=G, sampling=self.sampling, seed=seed)
            else:
                future = finished(self.engine.generate(batch["prompt_ids"], n=G, sampling=self.sampling, seed=seed))
                timers["generate"] += time.perf_counter() - start
        return Pending(problems, batch, weights_step, future, skipped)

    def _score_rollout(self, pending: Pending, timers: dict[str, float]) -> Scored:
        """Score a rollout asked for (waiting for it if it is still being generated: that wait counts as generation)."""
        start, G, batch = time.perf_counter(), self.num_generations, pending.batch
        with engine_failure(self.engine, "generating"):
            rollout = pending.future.result()
        generated = time.perf_counter()
        prompts = [p for p in batch["prompt"] for _ in range(G)]  # [N]
        answers = [a for a in batch["answer"] for _ in range(G)]  # [N]
        per_reward, errors = score_completions(  # [R, N], [R]
            self.rewards, prompts, rollout.texts, answers, rollout.completion_lengths.tolist(), self.sampling.max_tokens
        )
        timers["generate"] += generated - start
        timers["score"] += time.perf_counter() - generated
        timers["skipped"] += pending.skipped
        return Scored(batch, rollout.to("cpu"), per_reward, weighted_sum(self.rewards, per_reward), errors)

    def _more_problems(self, timers: dict[str, float]):
        """Dynamic sampling's source of extra rounds: problems from the datamodule's extra stream, sampled with a
        seed of their own per (step, rank, round)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if not hasattr(datamodule, "draw_extra"):
            raise ConfigError("model.dynamic_sampling draws extra problems from the datamodule: use MathDataModule")

        def more(round_: int, count: int) -> Scored:
            seed = derive_seed(self.sampling.seed, self.global_step, self.global_rank, DYNAMIC_SAMPLING_KEY, round_)
            return self._generate_and_score(datamodule.draw_extra(count), seed, timers)

        return more

    def _remember_difficulty(self, pool: Scored) -> None:
        """Tell the difficulty filter which problems came out flat; every rank learns every rank's results."""
        seen = (pool.batch["problem"], zero_spread(pool.rewards, self.num_generations).tolist())
        everyone = gather_objects(seen)
        for problems, flat in everyone:
            self.difficulty_filter.update(problems, flat, self.global_step)

    def _optimise(self, rollout: Rollout, advantages: Tensor, mask: Tensor) -> dict[str, float]:
        """μ optimizer steps over the rollout, each accumulating micro-batch gradients into one update. ``mask``
        [N, C]: the completion tokens that get loss (the completion mask minus rows left out of training).
        Per-micro-batch statistics stay on the device; they are read to the host once per update."""
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        input_ids, attention = rollout.sequences()  # [N, P + C] each
        global_tokens = float(self.all_gather(mask.sum()).sum()) if self.trainer.world_size > 1 else float(mask.sum())
        token_weights = self.loss.token_weights(mask, self.sampling.max_tokens, global_tokens, self.trainer.world_size)  # [N, C]
        starts = range(0, mask.shape[0], self.micro_batch_size)
        widths = mask.sum(dim=1).split(self.micro_batch_size)  # each micro-batch's longest trained completion
        slices = [(slice(i, i + self.micro_batch_size), int(w)) for i, w in zip(starts, torch.stack([w.max() for w in widths]).tolist())]

        ds_engine = deepspeed_engine(self.trainer)
        sampler = rollout.sampler_logprobs  # [N, C] or None
        # the trainer's pre-update log-probs of the sampled tokens, [N, C], for the mismatch metrics (no host sync here)
        pre_update = torch.zeros(mask.shape, device=mask.device) if sampler is not None else None
        old_logps = ref_logps = None
        zero = torch.zeros((), device=mask.device)
        sums = {"entropy": zero, "tokens": zero, "trained_entropy": zero, "trained_tokens": zero, "is_masked": zero}
        with torch.no_grad():
            if self.num_iterations > 1 or self.top_entropy_quantile < 1.0:
                old_logps, old_entropy = self._logps_batched(self.policy, input_ids, attention, mask, slices, entropy=True)
                if self.num_iterations == 1:
                    old_logps = None  # only the entropies were wanted; μ = 1 uses the live log-probs detached
            if self.ref_model is not None:
                ref_logps, _ = self._logps_batched(self.ref_model, input_ids, attention, mask, slices)
        pg_mask = mask.float()  # [N, C]: tokens whose policy-gradient term counts
        if self.top_entropy_quantile < 1.0:
            pg_mask = high_entropy_mask(old_entropy, mask, self.top_entropy_quantile)

        for iteration in range(self.num_iterations):
            total_loss, total = zero, LossStats()
            for k, (mb, width) in enumerate(slices):
                last = k == len(slices) - 1
                mark_accumulation_boundary(ds_engine, last)
                with self._no_sync(last):
                    # the entropy of the policy that sampled the rollout is measured at iteration 0, from the same pass
                    mode = "grad" if self.entropy_coef > 0 else ("metric" if iteration == 0 else "none")
                    logps, entropy = self.completion_logprobs(  # [n, width] each
                        self.policy, input_ids[mb], attention[mb], mask.shape[1], width, mode)
                    m = mask[mb, :width]  # [n, width]
                    if iteration == 0:
                        h, pg = entropy.detach(), pg_mask[mb, :width]
                        sums["entropy"] = sums["entropy"] + (h * m).sum()
                        sums["tokens"] = sums["tokens"] + m.sum()
                        sums["trained_entropy"] = sums["trained_entropy"] + (h * pg).sum()
                        sums["trained_tokens"] = sums["trained_tokens"] + pg.sum()
                    old = old_logps[mb, :width] if old_logps is not None else logps.detach()
                    ref = ref_logps[mb, :width] if ref_logps is not None else None
                    is_weights = None
                    if sampler is not None:
                        sampled = sampler[mb, :width]
                        if iteration == 0:
                            pre_update[mb, :width] = old.detach()
                        if self.importance_sampling is not None:
                            is_weights = self.importance_sampling.weights(old, sampled, m)
                            if iteration == 0:
                                sums["is_masked"] = sums["is_masked"] + ((is_weights == 0) & m.bool()).sum()
                    if self.top_entropy_quantile < 1.0:
                        pg = pg_mask[mb, :width]
                        is_weights = pg if is_weights is None else is_weights * pg
                    loss, stats = self.loss(logps, old, ref, advantages[mb], token_weights[mb, :width], is_weights)
                    if self.entropy_coef > 0:  # the bonus, weighted like the loss's own tokens
                        loss = loss - self.entropy_coef * (entropy * token_weights[mb, :width]).sum()
                    self.manual_backward(loss)
                total_loss = total_loss + loss.detach()
                total = total + stats
            grad_norm = self._clip_gradients() if ds_engine is None else None  # DeepSpeed clips inside its step
            lr = optimizer.param_groups[0]["lr"]  # the rate this update uses (logged before the scheduler moves it)
            if self.nonfinite.skip(float(total_loss), grad_norm, self.trainer.strategy):  # NaN/inf: no step, no LR step
                optimizer.zero_grad(set_to_none=True)
                continue
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ds_engine is not None:
                grad_norm = gradient_norm(ds_engine)
            scheduler.step()
        scalars = {**sums, "loss": total_loss, **{f.name: getattr(total, f.name) for f in dataclasses.fields(total)}}
        host = dict(zip(scalars, torch.stack([torch.as_tensor(v, dtype=torch.float32, device=mask.device).reshape(())
                                              for v in scalars.values()]).tolist()))
        total = LossStats(**{field.name: host[field.name] for field in dataclasses.fields(LossStats)})
        out = {
            "loss": host["loss"], "grad_norm": grad_norm, "lr": lr, "kl": total.mean("kl"),
            "clip_low": total.mean("clip_low"), "clip_high": total.mean("clip_high"),
            "entropy": host["entropy"] / max(host["tokens"], 1.0),
            "entropy_trained": host["trained_entropy"] / max(host["trained_tokens"], 1.0),
        }
        if pre_update is not None:
            out.update(sampling_mismatch(pre_update, sampler, mask))
            if self.importance_sampling is not None:
                out["is_masked_ratio"] = host["is_masked"] / max(host["tokens"], 1.0)
        return out

    @torch.no_grad()
    def rollout_logprobs(self, rollout: Rollout) -> Tensor:
        """The policy's log-probs of a rollout's completion tokens, [N, C]: what an engine's sampler log-probs are
        checked against."""
        input_ids, attention = rollout.sequences()  # [N, P + C] each
        width = rollout.completion_ids.shape[1]
        return self.completion_logprobs(self.policy, input_ids, attention, width, width)[0]

    def _logps_batched(
        self, model, input_ids: Tensor, attention: Tensor, mask: Tensor, slices: list[tuple[slice, int]],
        entropy: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Log-probs of every completion token, micro-batch by micro-batch ((rows, width) pairs), and with
        ``entropy`` the entropies at the same positions. Returns ([N, C], [N, C] or None), 0 beyond each width."""
        out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        ent = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device) if entropy else None
        for mb, width in slices:
            logps, h = self.completion_logprobs(model, input_ids[mb], attention[mb], mask.shape[1], width,
                                                "metric" if entropy else "none")
            out[mb, :width] = logps
            if entropy:
                ent[mb, :width] = h
        return out, ent

    def _no_sync(self, last: bool):
        """Skip DDP's gradient all-reduce on all but the last micro-batch of an update."""
        wrapped = getattr(self.trainer.strategy, "model", None)
        if not last and hasattr(wrapped, "no_sync") and isinstance(wrapped, torch.nn.parallel.DistributedDataParallel):
            return wrapped.no_sync()
        return contextlib.nullcontext()

    def _clip_gradients(self) -> float:
        params = [p for p in self.policy.parameters() if p.grad is not None]
        if not params:
            return 0.0
        max_norm = self.hparams.max_grad_norm if self.hparams.max_grad_norm is not None else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    # ---- validation -----------------------------------------------------------------------------------------

    def validation_step(self, batch: dict[str, list], batch_idx: int) -> None:
        """One sampled completion per held-out problem, scored by the training rewards; with ``val_pass_at_k``, n
        per problem: the first of each scored as before, all n graded by answer equivalence for pass@k / maj@k."""
        n = self.val_pass_at_k.n if self.val_pass_at_k is not None else 1
        seed = derive_seed(self.sampling.seed, self.global_step, self.global_rank, 1 + batch_idx)
        with engine_failure(self.engine, "generating"):
            rollout = self.engine.generate(batch["prompt_ids"], n=n, sampling=self.sampling, seed=seed)
        first = list(range(0, len(rollout.texts), n))  # each problem's first sample
        per_reward, _ = score_completions(  # [R, B]
            self.rewards, batch["prompt"], [rollout.texts[i] for i in first], batch["answer"],
            rollout.completion_lengths[first].tolist(), self.sampling.max_tokens,
        )
        size = len(batch["prompt"])
        self.log("val/reward", weighted_sum(self.rewards, per_reward).mean().to(self.device), batch_size=size, sync_dist=True)
        accuracy = [row for reward, row in zip(self.rewards, per_reward) if isinstance(reward, AccuracyReward)]
        if accuracy:  # pass@1: one sample per problem, scored by the (first) accuracy reward
            self.log("val/accuracy", accuracy[0].mean().to(self.device), batch_size=size, sync_dist=True)
        for reward, row in zip(self.rewards, per_reward):
            self.log(f"val/rewards/{reward.name}/mean", row.mean().to(self.device), batch_size=size, sync_dist=True)
        if self.val_pass_at_k is not None:
            grader = next(r for r in self.rewards if isinstance(r, AccuracyReward))  # equivalence only, no format
            golds = [a for a in batch["answer"] for _ in range(n)]
            correct = grader([p for p in batch["prompt"] for _ in range(n)], rollout.texts, golds)
            extracted = [extract_answer(text) for text in rollout.texts]
            for name, value in self.val_pass_at_k.metrics(extracted, correct).items():
                self.log(f"val/{name}", torch.tensor(value, device=self.device), batch_size=size, sync_dist=True)
