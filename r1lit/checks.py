"""Checks of settings that only fail in combination, run when the config is parsed, each naming the fix."""

from __future__ import annotations

import importlib

from r1lit.errors import ConfigError

__all__ = ["ConfigError", "check_batch_layout", "check_combinations", "check_engine_length", "check_reward_weights"]


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


def check_reward_weights(reward_weights: list[float] | None, own_weights: list[float]) -> None:
    """``model.reward_weights`` gives one weight per reward, in order, and replaces the rewards' own weights."""
    if reward_weights is None:
        return
    if len(reward_weights) != len(own_weights):
        raise ConfigError(
            f"model.reward_weights has {len(reward_weights)} weight(s) for {len(own_weights)} reward(s) in "
            f"model.rewards; give one weight per reward, in the same order (or drop reward_weights and set each "
            "reward's init_args.weight)"
        )
    if any(w != 1.0 for w in own_weights):
        raise ConfigError(
            f"reward weights are given twice: model.reward_weights={list(reward_weights)} and the rewards' own "
            f"weights {list(own_weights)}; keep one (set each reward's weight back to 1.0, or drop reward_weights)"
        )


def check_engine_length(max_model_len: int | None, engine_prompt_length: int, max_prompt_length: int, max_tokens: int) -> None:
    """The vLLM engine must hold the longest prompt the data lets through plus the longest completion. Its
    ``max_model_len`` is its own setting, or else VLLMRollout's ``max_prompt_length`` + ``max_tokens``."""
    needed = max_prompt_length + max_tokens
    if max_model_len is not None and max_model_len < needed:
        raise ConfigError(
            f"VLLMEngine max_model_len={max_model_len} is shorter than data.max_prompt_length + "
            f"model.sampling.max_tokens = {max_prompt_length} + {max_tokens} = {needed}; raise max_model_len to "
            f"{needed} (or leave it unset), or lower one of the two"
        )
    if max_model_len is None and engine_prompt_length < max_prompt_length:
        raise ConfigError(
            f"VLLMRollout max_prompt_length={engine_prompt_length} is shorter than data.max_prompt_length="
            f"{max_prompt_length}: the engine would refuse the longest prompts. Set VLLMRollout's "
            f"max_prompt_length to {max_prompt_length}"
        )


DEEPSPEED_CLASSES = {"lightning.pytorch.strategies.DeepSpeedStrategy", "lightning.pytorch.strategies.deepspeed.DeepSpeedStrategy"}


def check_deepspeed_device(strategy, accelerator, cuda_available: bool) -> None:
    """Lightning's DeepSpeedStrategy needs CUDA; say so when the config is read, not after the model loads.
    (Subclasses are left alone: the tests run DeepSpeed on CPU through one.)"""
    asked = (isinstance(strategy, str) and strategy.startswith("deepspeed")) or getattr(strategy, "class_path", None) in DEEPSPEED_CLASSES
    if asked and (accelerator == "cpu" or not cuda_available):
        where = "trainer.accelerator is cpu" if accelerator == "cpu" else "no CUDA GPU is visible (torch.cuda.is_available() is False)"
        raise ConfigError(
            f"trainer.strategy asks for DeepSpeed, which needs CUDA GPUs, but {where}. On a CPU machine use "
            "configs/smollm2-cpu.yaml or set trainer.strategy: auto (and trainer.accelerator: cpu); for the "
            "DeepSpeed recipes, run on a GPU machine with a CUDA build of torch (make install TORCH=torch)"
        )


def check_combinations(config, cuda_available: bool) -> None:
    """Every check above that a parsed ``r1lit fit`` config can fail, before anything is loaded."""
    model, data, trainer = config.model, config.data, config.trainer
    check_reward_weights(model.reward_weights, [getattr(r.init_args, "weight", 1.0) for r in model.rewards])
    check_deepspeed_device(trainer.strategy, trainer.accelerator, cuda_available)
    from r1lit.callbacks.vllm_rollout import VLLMRollout

    for callback in trainer.callbacks or []:
        if isinstance(getattr(callback, "class_path", None), str) and issubclass(_import(callback.class_path), VLLMRollout):
            engine = callback.init_args.engine
            max_model_len = getattr(engine.init_args, "max_model_len", None) if engine is not None else None
            check_engine_length(max_model_len, callback.init_args.max_prompt_length, data.max_prompt_length, model.sampling.max_tokens)


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)
