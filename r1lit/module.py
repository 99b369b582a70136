"""GRPOModule: one GRPO step per batch of problems, with manual optimisation.

The variant that runs: for each of B problems sample G completions (``engine``), score them with rule-based
rewards (weighted sum), turn rewards into group-relative advantages (``scale_rewards``), then take
``num_iterations`` (μ) optimizer steps on the same rollout with the clipped surrogate of ``loss`` (GRPO, BNPO,
Dr. GRPO or DAPO weighting; k3 KL to a frozen reference when ``loss.beta > 0``), each step accumulating gradients
over micro-batches. With μ = 1 the "old" log-probs are the current ones detached, so the ratio is exactly 1.

Launch: ``r1lit fit --config configs/qwen0.5b.yaml`` (GPUs) or ``make run`` (embedded model on CPU).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from r1lit.data.batch import ProblemBatch
from r1lit.errors import ConfigError
from r1lit.eval.pass_at_k import PassAtK
from r1lit.eval.set_accuracy import SetAccuracy
from r1lit.eval.validation_metrics import validation_metrics
from r1lit.grpo.advantages import group_advantages
from r1lit.grpo.groups import scored_groups
from r1lit.grpo.losses import GRPOLoss
from r1lit.grpo.metrics import as_tensors, optimise_metrics, rollout_metrics
from r1lit.grpo.optimise import PolicyUpdate, check_batch_layout
from r1lit.policy.compile import check_compile_zero_stage, compile_decoder_layers
from r1lit.policy.config import PolicyConfig
from r1lit.policy.loading import disable_dropout_in_model, load_policy, load_tokenizer
from r1lit.policy.logit_kernels import LogitKernels
from r1lit.policy.logprobs import CompletionLogprobs
from r1lit.policy.shared_prefix import SharedPrefixLogprobs
from r1lit.producer.difficulty import DifficultyFilter
from r1lit.producer.dynamic_sampling import DynamicSampling
from r1lit.producer.rollout_producer import ProducedRollout, RolloutProducer
from r1lit.rewards.accuracy import AccuracyReward
from r1lit.rewards.base import Reward
from r1lit.rollout.engine import RolloutEngine, engine_failure
from r1lit.rollout.hf import HFEngine
from r1lit.rollout.types import Rollout, SamplingConfig
from r1lit.rollout.vllm.base import VLLMSettings
from r1lit.training.deepspeed import configure_deepspeed, is_deepspeed, zero_stage
from r1lit.training.distributed import gather_uneven
from r1lit.training.nonfinite import NonFiniteGuard
from r1lit.training.optim import CosineWithWarmup, default_optimizer
from r1lit.training.seeds import validation_seed


class GRPOModule(L.LightningModule):
    """Coordinates rollout → score → advantage → optimise → log; the formulas live in ``r1lit.grpo``."""

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
        micro_batch_size: int = 8,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        max_grad_norm: float | None = 1.0,
        max_consecutive_nonfinite: int = 3,
        policy: PolicyConfig = PolicyConfig(),
        dynamic_sampling: DynamicSampling | None = None,
        difficulty_filter: DifficultyFilter | None = None,
        async_generation: bool = False,
        val_pass_at_k: PassAtK | None = None,
    ):
        """
        Args:
            model_name_or_path: policy to train: hub id, local folder, or ``embedded:smollm2-135m-instruct``.
            rewards: rule-based rewards, summed with their weights (``AccuracyReward``, ``FormatReward``, your own).
            loss: the objective, its weighting and what reshapes its tokens: ``GRPOLoss`` (None = its defaults),
                ``BNPOLoss``, ``DrGRPOLoss``, ``DAPOLoss`` or ``GSPOLoss``; its ``beta`` > 0 adds the KL penalty and
                keeps a frozen reference copy; its ``importance_sampling``, ``entropy`` and
                ``mask_truncated_completions`` correct, regularise and filter the trained tokens.
            engine: generates the completions, chosen here and only here: None = ``HFEngine`` (the policy's own
                generate); ``VLLMEngine`` (vLLM in process: cpu, colocate) or ``VLLMServerEngine`` (vLLM in its own
                process on the reserved GPU, or attached by base_url); the ``r1lit`` command adds the
                ``VLLMEngineCallback`` that starts, syncs and stops a vLLM engine.
            sampling: temperature, top_p, top_k, min_p, repetition_penalty and max_tokens (the max completion length).
            num_generations: G, completions sampled per problem.
            scale_rewards: divide centred rewards by the group's std (``group``, GRPO), the batch's std (``batch``)
                or not at all (``none``, Dr. GRPO).
            num_iterations: μ, optimizer steps taken on each rollout.
            micro_batch_size: completions per forward/backward; must divide data.batch_size × num_generations.
            optimizer: the optimizer over the policy's parameters (e.g. ``{class_path: torch.optim.AdamW, init_args:
                {lr: 2.0e-5}}``); None = the seed recipe's AdamW (lr 3e-6, betas (0.9, 0.99), no weight decay).
            scheduler: the learning-rate schedule, stepped once per optimizer step; a ``CosineWithWarmup`` without its
                own ``total_steps`` is fitted to the run's optimizer steps. None = ``CosineWithWarmup`` without warmup
                (the seed's cosine to 0).
            max_grad_norm: clip the gradient's global norm to this (None = no clipping).
            max_consecutive_nonfinite: an update whose loss or gradient norm is NaN/inf is skipped (counted in
                ``train/skipped_steps``); this many in a row stop the run with an error.
            policy: how the policy is loaded and run (``PolicyConfig``: dtype, attention kernel, gradient
                checkpointing, dropout, log-prob chunking, the reference's dtype).
            dynamic_sampling: DAPO's dynamic sampling: drop groups whose rewards are all equal and generate more
                problems until the batch is full of informative groups (``DynamicSampling``); None = off.
            difficulty_filter: skip, before generating, problems whose last group (recently) had zero reward
                spread (``DifficultyFilter``); needs ``dynamic_sampling``, which draws their replacements.
            async_generation: one-step-off: the engine samples the next step's rollout while this step trains
                (from weights one update older; ``loss.importance_sampling`` corrects for it, ``rollout/staleness``
                logs it). Needs an engine that generates apart from the trainer (``VLLMServerEngine``).
            val_pass_at_k: validation by answer equivalence alone: ``val/pass@k`` and ``val/maj@k`` from n samples
                per held-out problem (``PassAtK``), graded by the first ``AccuracyReward``; None = pass@1 only.
        """
        super().__init__()
        self.automatic_optimization = False
        if not rewards:
            raise ConfigError("model.rewards is empty: add at least one reward, e.g. {class_path: AccuracyReward}")
        check_batch_layout(1, num_generations, 1)
        if num_iterations < 1 or micro_batch_size < 1:
            raise ConfigError("model.num_iterations and model.micro_batch_size must be >= 1")
        self.save_hyperparameters(ignore=["rewards", "loss", "engine", "sampling", "dynamic_sampling", "val_pass_at_k",
                                          "difficulty_filter", "optimizer", "scheduler", "policy"])
        self.hparams["policy"] = dataclasses.asdict(policy)  # plain values: checkpoints load with weights_only
        self.make_optimizer, self.make_scheduler = optimizer, scheduler
        self.rewards, self.sampling, self.policy_config = list(rewards), sampling, policy
        self.loss = loss if loss is not None else GRPOLoss()
        self.engine = engine if engine is not None else HFEngine()
        self.num_generations, self.scale_rewards = num_generations, scale_rewards
        self.num_iterations, self.micro_batch_size = num_iterations, micro_batch_size
        # the accuracy reward, found once: val/accuracy and pass@k grade with it
        self.accuracy = next((r for r in self.rewards if isinstance(r, AccuracyReward)), None)
        self.set_accuracy = SetAccuracy()  # named validation sets: val/accuracy is the mean of theirs
        if val_pass_at_k is not None and self.accuracy is None:
            raise ConfigError("model.val_pass_at_k grades by answer equivalence: add an AccuracyReward to model.rewards")
        self.val_pass_at_k = val_pass_at_k
        self.producer = RolloutProducer(self.engine, self.rewards, sampling, num_generations, num_iterations,
                                        dynamic_sampling, difficulty_filter, one_step_off=async_generation)
        chunk = policy.logprob_chunk_tokens
        scorer = SharedPrefixLogprobs if policy.shared_prefix else CompletionLogprobs
        self.completion_logprobs = scorer(sampling.temperature, chunk or 1, chunked=chunk is not None,
                                          kernels=LogitKernels(compiled=policy.compile_logprobs))
        self.nonfinite = NonFiniteGuard(max_consecutive_nonfinite)
        self.update = PolicyUpdate(self.loss, self.completion_logprobs, micro_batch_size, num_iterations,
                                   sampling.max_tokens, max_grad_norm, self.nonfinite)
        self.tokenizer = load_tokenizer(model_name_or_path)
        self.policy = load_policy(model_name_or_path, policy.dtype, policy.attn_implementation)
        if policy.disable_dropout:
            disable_dropout_in_model(self.policy)  # before the reference is copied from it
        if policy.gradient_checkpointing:
            self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # The reference is kept out of the module's children: it is neither trained nor saved in checkpoints.
        self._ref = [copy.deepcopy(self.policy).eval().requires_grad_(False)] if self.loss.beta > 0 else []
        if policy.compile_layers:
            for model in (self.policy, *self._ref):
                compile_decoder_layers(model)
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
        if self.policy_config.compile_layers:
            check_compile_zero_stage(zero_stage(self.trainer))
        if is_deepspeed(self.trainer.strategy):  # before the strategy builds the engine from its config
            configure_deepspeed(self.trainer.strategy, self.hparams.max_grad_norm, self.micro_batch_size)
        if isinstance(self.engine, VLLMSettings) and not any(getattr(c, "engine", None) is self.engine
                                                             for c in self.trainer.callbacks):  # its setup ran first
            raise ConfigError(f"model.engine {type(self.engine).__name__} is started and synced by the VLLMEngineCallback: "
                              "the r1lit command adds it; a Trainer built in Python needs callbacks=[VLLMEngineCallback()]")
        self.engine.bind(self.policy, self.tokenizer)
        if self.producer.one_step_off is not None and not getattr(datamodule, "lookahead", False):
            raise ConfigError("model.async_generation needs each batch's successor from the data: use MathDataModule "
                              "with lookahead=True (the r1lit command sets it from model.async_generation)")

    def on_fit_start(self) -> None:
        if self.ref_model is not None:
            bf16 = self.policy_config.bf16_reference and str(self.trainer.precision) == "bf16-mixed"
            self.ref_model.to(self.device, dtype=torch.bfloat16 if bf16 else None)
        self.policy.train()

    def teardown(self, stage: str) -> None:
        for reward in self.rewards:
            reward.close()  # worker processes; they start again if the rewards are used again

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # running totals, skipped-update counts and the producer's state survive a resume
        checkpoint["r1lit_counters"] = {"samples_seen": self.samples_seen, "num_tokens": self.num_tokens}
        checkpoint["nonfinite"] = self.nonfinite.state_dict()
        checkpoint.update(self.producer.state_dict(self.trainer.world_size))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        counters = checkpoint.get("r1lit_counters", {})
        self.samples_seen, self.num_tokens = counters.get("samples_seen", 0), counters.get("num_tokens", 0)
        self.nonfinite.load_state_dict(checkpoint.get("nonfinite", {}))
        self.producer.load_state_dict(checkpoint, self.global_rank, self.trainer.world_size)

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

    def training_step(self, batch: ProblemBatch, batch_idx: int) -> dict:
        start = time.perf_counter()
        # 1-2. rollout and score (one-step-off, difficulty filter, dynamic sampling inside)
        produced = self.producer.produce(batch, self.global_step, self.global_rank,
                                         getattr(getattr(self.trainer, "datamodule", None), "draw_extra", None))
        scored, rollout = produced.scored, produced.scored.rollout.to(self.device)
        # 3. advantages, and the completions that get loss
        advantages = group_advantages(scored.rewards, self.num_generations, self.scale_rewards).to(self.device)  # [N]
        trained = self.loss.trained_rows(rollout.truncated, self.num_generations, produced.trained_groups)  # [N]
        scored_at = time.perf_counter()
        # 4. optimise: μ updates over micro-batches
        stats = self.update(self, self.policy, self.ref_model, rollout, advantages,
                            rollout.completion_mask * trained.unsqueeze(1).to(self.device))  # mask [N, C]
        # 5. log
        self._log_step(produced, stats, len(batch), {"step_time": time.perf_counter() - start,
                                                     "time/optimise": time.perf_counter() - scored_at})
        groups = scored_groups(scored.batch, scored.rollout, scored.per_reward, scored.rewards, advantages,
                               [r.name for r in self.rewards])
        return {"groups": groups, "rollout": rollout}  # callbacks: what was trained on (tensors on the device)

    def _log_step(self, produced: ProducedRollout, stats: dict[str, float], size: int, times: dict[str, float]) -> None:
        """Counts every completion generated this step (dynamic sampling's dropped groups too) and logs the step."""
        generated = produced.pool.rollout
        counts = torch.stack([generated.prompt_mask.sum() + generated.completion_mask.sum(),
                              torch.tensor(len(generated.texts))]).float().to(self.device)  # [tokens, completions]
        lengths, truncated = generated.completion_lengths.to(self.device), generated.truncated.to(self.device)  # [N'], [N']
        if self.trainer.world_size > 1:
            counts = self.all_gather(counts).sum(dim=0)
            lengths, truncated = gather_uneven(lengths), gather_uneven(truncated.long())
        self.num_tokens += int(counts[0])
        self.samples_seen += int(counts[1])
        produced_times = produced.times
        metrics = as_tensors({
            **rollout_metrics(produced.pool, self.rewards, lengths, truncated),
            **({"difficulty_filter/skipped": produced_times.skipped} if self.producer.difficulty_filter else {}),
            **(produced.filled.metrics() if produced.filled is not None else {}),
            "num_tokens": self.num_tokens,
            **optimise_metrics(stats, self.loss.beta),
            "train/skipped_steps": self.nonfinite.skipped,
            "step_time": times["step_time"],
            **produced_times.metrics(),  # time/generate, time/score, time/generate/engine_<i> with several engines
            "time/optimise": times["time/optimise"],
            "rollout/staleness": produced.staleness,
        }, self.device)
        sync = self.trainer.world_size > 1
        self.log("reward", metrics.pop("reward"), prog_bar=True, on_step=True, sync_dist=sync, batch_size=size)
        self.log_dict(metrics, on_step=True, on_epoch=False, sync_dist=sync, batch_size=size)

    @torch.no_grad()
    def rollout_logprobs(self, rollout: Rollout) -> Tensor:
        """The policy's log-probs of a rollout's completion tokens, [N, C]: what an engine's sampler log-probs are
        checked against."""
        input_ids, attention = rollout.sequences()  # [N, P + C] each
        width = rollout.completion_ids.shape[1]
        return self.completion_logprobs(self.policy, input_ids, attention, width, width)[0]

    # ---- validation -----------------------------------------------------------------------------------------

    def validation_step(self, batch: ProblemBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """n sampled completions per held-out problem (n = 1 without ``val_pass_at_k``), measured by
        ``validation_metrics``. With named sets (``data.val_sources``) every metric is ``val/<name>/…`` and
        ``val/accuracy`` is the mean of their accuracies."""
        names = self._val_names()
        name = names[dataloader_idx] if names else None
        n = self.val_pass_at_k.n if self.val_pass_at_k is not None else 1
        seed = validation_seed(self.sampling.seed, self.global_step, self.global_rank, batch_idx, dataloader_idx)
        with engine_failure(self.engine, "generating"):
            rollout = self.engine.generate(batch.prompt_ids, n=n, sampling=self.sampling, seed=seed)
        metrics, scores = validation_metrics(rollout, batch, n, self.rewards, self.accuracy, self.val_pass_at_k,
                                             self.sampling.max_tokens)
        if name is not None and scores is not None:
            self.set_accuracy.add(name, scores)
        for metric, value in metrics.items():
            self.log(f"val/{name}/{metric}" if name else f"val/{metric}", value.to(self.device), batch_size=len(batch),
                     sync_dist=True, add_dataloader_idx=False)

    def _val_names(self) -> list[str]:
        return getattr(getattr(self.trainer, "datamodule", None), "val_names", None) or []

    def on_validation_epoch_start(self) -> None:
        self.set_accuracy.reset()

    def on_validation_epoch_end(self) -> None:
        if names := self._val_names():
            mean = self.set_accuracy.mean(names, self.device, self.all_gather if self.trainer.world_size > 1 else None)
            if mean is not None:
                self.log("val/accuracy", torch.tensor(mean, device=self.device))
