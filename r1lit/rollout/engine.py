"""The interface every rollout engine implements; the module knows engines only through it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

from torch import Tensor, nn

from r1lit.rollout.types import Rollout, SamplingConfig


class RolloutEngine(ABC):
    """Generates G completions per prompt with the current policy weights."""

    def bind(self, policy: nn.Module, tokenizer) -> None:
        """Called once by the module with the policy and tokenizer it trains (engines that keep their own model
        use the tokenizer for EOS ids and decoding)."""

    @abstractmethod
    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, seed: int | None = None) -> Rollout:
        """Sample ``n`` completions for each prompt; the result is ordered group by group. The same ``seed`` with the
        same weights and prompts draws the same samples (None = the engine's own random state)."""

    def load_weights(self, named_tensors: Iterable[tuple[str, Tensor]]) -> None:
        """Take the policy's new weights (engines that share the policy's parameters need nothing)."""

    def close(self) -> None:
        """Free the engine's resources."""
