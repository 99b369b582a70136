"""DAPO's soft overlong punishment: a penalty that grows linearly over the last ``cache`` tokens before the limit.

With L = ``max_length`` (by default the rollout's ``sampling.max_tokens``) and c = ``cache``, a completion of
``n`` generated tokens (its EOS included) scores

    0                  if n <= L - c
    (L - c - n) / c    if L - c < n <= L     (from 0 down to -1)
    -1                 if n > L

(DAPO, eq. 13; TRL's ``get_soft_overlong_punishment``). It counts the tokens the engine generated, not a
re-tokenisation of the decoded text, so it reads them from the rollout (``needs_token_lengths``).
"""

from __future__ import annotations

from typing import Literal

from r1lit.errors import ConfigError
from r1lit.rewards.base import Reward


def soft_overlong_penalty(lengths: list[int], max_length: int, cache: int) -> list[float]:
    """The penalty of each completion length (tokens): 0 up to ``max_length - cache``, then linear down to -1 at
    ``max_length``, and -1 beyond."""
    start = max_length - cache
    return [0.0 if n <= start else -1.0 if n > max_length else (start - n) / cache for n in lengths]


class OverlongPenalty(Reward):
    """Penalises completions that run into the last ``cache`` tokens before the length limit (DAPO's overlong
    reward shaping). Pair it with the loss's ``mask_truncated_completions`` (DAPO's overlong filtering) or use it
    instead of it."""

    needs_token_lengths = True

    def __init__(
        self, cache: int = 16, max_length: int | None = None, weight: float = 1.0, name: str | None = None,
        on_error: Literal["raise", "zero"] = "raise",
    ):
        """
        Args:
            cache: length of the penalty ramp in tokens (DAPO's L_cache; 4096 of 20480 in the paper).
            max_length: the length at which the penalty reaches -1; None = ``model.sampling.max_tokens``.
            weight: factor applied to this reward before rewards are summed.
            name: metrics key; defaults to ``overlong``.
            on_error: ``raise`` or ``zero`` (see ``Reward``).
        """
        super().__init__(weight=weight, name=name or "overlong", on_error=on_error)
        if cache < 1 or (max_length is not None and max_length <= cache):
            raise ConfigError(f"OverlongPenalty needs cache >= 1 and max_length > cache, got cache={cache}, max_length={max_length}")
        self.cache, self.max_length = cache, max_length

    def __call__(
        self, prompts: list[str], completions: list[str], answers: list[str],
        completion_lengths: list[int] | None = None, max_tokens: int | None = None,
    ) -> list[float]:
        if completion_lengths is None:
            raise ValueError("OverlongPenalty scores token lengths: call it with completion_lengths (the module does)")
        limit = self.max_length if self.max_length is not None else max_tokens
        if limit is None or limit <= self.cache:
            raise ConfigError(f"OverlongPenalty: max_length {limit} must be set and exceed cache={self.cache}")
        return soft_overlong_penalty(completion_lengths, limit, self.cache)
