"""Rollouts with vLLM in the training process: one engine per rank, holding its own copy of the weights.

Topologies: ``cpu`` (one rank, vLLM's CPU build) and ``colocate`` (every training rank owns an engine on its own
GPU). With several ranks the engines are built through vLLM's external launcher, all ranks together: it takes
the device from ``LOCAL_RANK`` (a plain in-process engine always lands on ``cuda:0``) and builds vLLM's groups from
the trainer's ranks (an engine built on only some ranks deadlocks there). The module never imports vLLM; this file
imports it only when an engine starts, so r1lit works without it installed. Written for vLLM 0.32.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor

from r1lit.rollout.vllm.launch import EngineLaunch, check_model_len, prefill_budget, split_calls
from r1lit.rollout.vllm.placement import colocated_memory_utilization
from r1lit.rollout.types import Rollout, SamplingConfig, rollout_from_samples
from r1lit.rollout.vllm.base import CPU_KV_CACHE_BYTES, GENERATION_CONFIG, VLLMSettings, import_vllm, sampling_fields
from r1lit.rollout.vllm.worker import refresh_tied_lm_head


class VLLMEngine(VLLMSettings):
    """A vLLM ``LLM`` in the training process, built from the policy's checkpoint; ``load_weights`` pushes the
    trainer's current weights into it. One per training rank.

    On a GPU it shares the device with training: its share (``gpu_memory_utilization``) is derived from, and
    bounded by, what the model's size and ZeRO stage leave the trainer; with ``sleep_mode`` it sleeps after each
    generate (the optimizer step runs with its memory free) and wakes before the next push or generate, so the
    weights are always pushed into an awake engine."""

    def __init__(self, sleep_mode: bool = True, **settings):
        """
        Args:
            sleep_mode: on GPUs whose vLLM supports it, sleep (level 1: weights to CPU memory, KV cache dropped)
                between generating and the next push. vLLM's CPU build has no sleep mode: no effect there.
            settings: the vLLM engine settings (dtype, memory, seed; see ``VLLMSettings``).
        """
        super().__init__(**settings)
        self.sleep_mode = sleep_mode
        self.sleeps = self.asleep = False  # whether this engine sleeps (decided at start), and whether it is asleep

    def start(self, launch: EngineLaunch) -> None:
        """Build the engine (after ``bind``). With several ranks every rank must call this together."""
        max_model_len = check_model_len(self.max_model_len, launch.max_prompt_length, launch.max_tokens)
        vllm = import_vllm()
        from vllm.platforms import current_platform

        kwargs = {}
        self.on_cpu = current_platform.is_cpu()
        memory = self.gpu_memory_utilization if self.gpu_memory_utilization is not None else 0.7
        if not self.on_cpu:
            gpu_bytes = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
            memory = colocated_memory_utilization(self.gpu_memory_utilization, self.num_parameters, launch.zero_stage,
                                                  launch.world_size, gpu_bytes)
            self.sleeps = self.sleep_mode and current_platform.is_sleep_mode_available()
            kwargs["enable_sleep_mode"] = self.sleeps
        kv_bytes = self.kv_cache_memory_bytes or (CPU_KV_CACHE_BYTES if self.on_cpu else None)
        if kv_bytes is not None:
            kwargs["kv_cache_memory_bytes"] = kv_bytes
        if self.on_cpu:  # seeded sampling on CPU must never chunk a prefill (see prefill_budget)
            kwargs["max_num_batched_tokens"], kwargs["max_num_seqs"] = prefill_budget(
                launch.sequences_per_call, launch.max_prompt_length)
        block_size = self.kv_block_size(self.on_cpu)
        if block_size is not None:
            kwargs["block_size"] = block_size
        if launch.world_size > 1:
            kwargs.update(external_launcher_args(launch))
        self.llm = vllm.LLM(
            model=launch.model_path,
            tokenizer=launch.model_path,
            dtype=self.dtype,
            max_model_len=max_model_len,
            gpu_memory_utilization=memory,
            enforce_eager=self.enforce_eager,
            enable_prefix_caching=self.enable_prefix_caching,
            seed=self.seed,
            logprobs_mode="processed_logprobs",
            generation_config=GENERATION_CONFIG,
            **kwargs,
        )
        scheduler = self.llm.llm_engine.vllm_config.scheduler_config
        self.budget = (scheduler.max_num_batched_tokens, scheduler.max_num_seqs)
        if launch.world_size > 1 and dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank's engine is up before any rank trains

    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, seed: int | None = None) -> Rollout:
        if self.llm is None:
            raise RuntimeError("VLLMEngine.generate called before start(): the VLLMEngineCallback starts it (the r1lit "
                               "command adds it; a Trainer built in Python needs callbacks=[VLLMEngineCallback()])")
        self._wake()
        try:
            return self._generate(prompt_ids, n, sampling, seed)
        finally:
            self._sleep()  # the optimizer step that follows runs with the engine's memory free

    def _generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, seed: int | None) -> Rollout:
        vllm = import_vllm()
        # On CPU a call larger than the prefill budget is cut into calls that fit; per-prompt seeds make the
        # samples the same however the call is cut.
        runs = split_calls([len(p) for p in prompt_ids], n, *self.budget) if self.on_cpu else [slice(0, len(prompt_ids))]
        sequences, logprobs = [], []
        for run in runs:
            params = [vllm.SamplingParams(**sampling_fields(sampling, n, None if seed is None else seed + i * n, self.eos_ids))
                      for i in range(run.start, run.stop)]
            prompts = [{"prompt_token_ids": ids} for ids in prompt_ids[run]]
            for request in self.llm.generate(prompts, params, use_tqdm=False):  # one per prompt, each with n samples
                for sample in request.outputs:
                    ids = list(sample.token_ids)
                    sequences.append(ids)
                    logprobs.append([step[token].logprob for token, step in zip(ids, sample.logprobs)])
        return rollout_from_samples(prompt_ids, n, sequences, logprobs, self.eos_ids, self.pad_id, self.tokenizer)

    def load_weights(self, named_tensors: Iterable[tuple[str, Tensor]]) -> None:
        """Replace vLLM's weights in place, re-derive what loading derives (tied lm_head, repacked CPU linears),
        and drop cached prefixes computed with the old weights."""
        weights = [(name, tensor.detach()) for name, tensor in named_tensors]
        # in the engine's own dtype, cast one tensor at a time as vLLM reads it: vLLM would cast each anyway, and
        # warns once per tensor of another dtype (~270 lines per push for a 135M model)
        dtype = getattr(torch, self.dtype) if self.dtype in ("float32", "bfloat16", "float16") else None
        self._wake()  # weights go into an awake engine: a sleeping one would restore its old copy over them
        self.llm.collective_rpc("reload_weights",
                                kwargs={"weights_iterator": ((name, t.to(dtype)) for name, t in weights)})
        self.llm.collective_rpc(refresh_tied_lm_head)
        self.llm.reset_prefix_cache()

    def _sleep(self) -> None:
        if self.sleeps and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def _wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def close(self) -> None:
        if self.llm is not None:
            del self.llm
            self.llm = None


def external_launcher_args(launch: EngineLaunch) -> dict:
    """vLLM's external launcher for one engine per training rank: each engine takes the device of
    ``LOCAL_RANK`` and is its own data-parallel replica (tensor parallel size 1)."""
    os.environ.setdefault("RANK", str(launch.global_rank))
    os.environ.setdefault("LOCAL_RANK", str(launch.local_rank))
    os.environ.setdefault("WORLD_SIZE", str(launch.world_size))
    return {"distributed_executor_backend": "external_launcher", "data_parallel_size": launch.world_size}
