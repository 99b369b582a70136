"""The R1-Zero format reward: ``<think> … </think> <answer> … </answer>`` and nothing else."""

from __future__ import annotations

from typing import Literal

from r1lit.errors import ConfigError
from r1lit.rewards.base import Reward
from r1lit.grading.tags import is_think_then_answer, tag_counts


class FormatReward(Reward):
    """1.0 when the completion is one ``<think>…</think>``, optional whitespace, then one ``<answer>…</answer>``.

    The tags are read by the shared scanner (``r1lit.grading.tags``): a second or nested answer or think block, a
    stray tag, or any text before the first tag or after the last makes it not the format (the seed's lazy regex
    ``^<think>.*?</think>\\s*<answer>.*?</answer>$`` accepted ``…<answer>1</answer><answer>2</answer>``).

    When the prompt itself ends with ``<think>`` (the plain R1-Zero template, or a chat prompt with the tag
    pre-filled), that opening tag counts as the completion's first token, as the model sees it.
    With ``partial_credit``, a completion that fails the strict pattern earns ``partial_credit / 4`` for each of
    the four tags it contains exactly once: a learning signal for small models that rarely hit the full format.
    """

    def __init__(
        self, weight: float = 1.0, name: str | None = None, partial_credit: float = 0.0,
        on_error: Literal["raise", "zero"] = "raise",
    ):
        """
        Args:
            weight: factor applied to this reward before rewards are summed.
            name: metrics key; defaults to ``format``.
            partial_credit: most a completion failing the strict pattern can earn from its tags (0 = strict only).
            on_error: ``raise`` stops the run when the reward fails; ``zero`` scores the failing completion 0 and
                counts it in ``rewards/<name>/errors``.
        """
        super().__init__(weight=weight, name=name, on_error=on_error)
        if not 0.0 <= partial_credit < 1.0:
            raise ConfigError(f"partial_credit must be in [0, 1), got {partial_credit}")
        self.partial_credit = partial_credit

    def __call__(self, prompts: list[str], completions: list[str], answers: list[str]) -> list[float]:
        scores = []
        for prompt, completion in zip(prompts, completions, strict=True):
            text = "<think>" + completion if prompt.rstrip().endswith("<think>") else completion
            if is_think_then_answer(text):
                scores.append(1.0)
            elif self.partial_credit:
                scores.append(self.partial_credit / 4 * sum(n == 1 for n in tag_counts(text).values()))
            else:
                scores.append(0.0)
        return scores
