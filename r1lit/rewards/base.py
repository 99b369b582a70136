"""The reward interface: batched, pure, one float per completion."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Literal

from r1lit.errors import ConfigError


class Reward(ABC):
    """A rule-based reward. Subclass it, implement ``__call__``, and name the class by ``class_path`` in YAML.

    ``__call__`` receives the prompts as the model saw them, the decoded completions and the gold answers (all of
    length N) and returns N floats. The module multiplies them by ``weight`` and sums over rewards.

    A reward that sets ``needs_token_lengths = True`` also receives ``completion_lengths`` (tokens generated per
    completion, EOS included) and ``max_tokens`` (the sampling limit) as keywords (``OverlongPenalty``).
    """

    needs_token_lengths: bool = False

    def __init__(self, weight: float = 1.0, name: str | None = None, on_error: Literal["raise", "zero"] = "raise"):
        """
        Args:
            weight: factor applied to this reward before rewards are summed.
            name: key of this reward's metrics (``rewards/<name>/mean``); defaults to the class name in snake
                case without the ``Reward`` suffix (``AccuracyReward`` -> ``accuracy``).
            on_error: when the reward raises (or returns NaN/inf) on a completion: ``raise`` stops the run
                naming the reward and the completion; ``zero`` scores that completion 0, counts it in
                ``rewards/<name>/errors`` and goes on.
        """
        if on_error not in ("raise", "zero"):
            raise ConfigError(f"on_error must be 'raise' or 'zero', got {on_error!r}")
        self.weight = float(weight)
        self.name = name or _default_name(type(self).__name__)
        self.on_error = on_error

    @abstractmethod
    def __call__(self, prompts: list[str], completions: list[str], answers: list[str]) -> list[float]:
        """Score each completion."""

    def close(self) -> None:
        """Release resources (worker processes) at the end of training."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weight={self.weight})"


def _default_name(class_name: str) -> str:
    base = class_name[: -len("Reward")] if class_name.endswith("Reward") and class_name != "Reward" else class_name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", base).lower()
