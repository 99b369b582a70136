"""Checks of settings that only fail in combination, run when the config is parsed, each naming the fix."""

from __future__ import annotations

from r1lit.errors import ConfigError

__all__ = ["ConfigError", "check_batch_layout"]


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
