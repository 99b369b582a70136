"""Accuracy: 1.0 when the completion's final answer is mathematically equal to the gold answer."""

from __future__ import annotations

from typing import Literal

from r1lit.errors import ConfigError
from r1lit.grading.answers import extract_answer
from r1lit.rewards.base import Reward
from r1lit.grading.verifier import SafeVerifier


class AccuracyReward(Reward):
    """The answer in the last complete ``<answer>…</answer>`` pair (or the last run of boxes) checked against the
    gold answer with math-verify.

    Extraction is ``r1lit.grading.answers.extract_answer``; both sides are then normalised alike
    (``r1lit.grading.normalise``) and numbers compared relative to the gold (``r1lit.grading.tolerance``). No
    answer, an answer longer than ``max_answer_chars``, a prose gold, an answer or gold that does not parse, or a
    check that runs out of time all score 0. Checks run in worker processes (see ``r1lit.grading.verifier``);
    model text is never evaluated as code.
    """

    def __init__(
        self,
        weight: float = 1.0,
        name: str | None = None,
        num_workers: int = 2,
        item_timeout: float = 4.0,
        batch_timeout: float = 60.0,
        max_answer_chars: int = 1000,
        memory_limit_mb: int = 2048,
        on_error: Literal["raise", "zero"] = "raise",
    ):
        """
        Args:
            weight: factor applied to this reward before rewards are summed.
            name: metrics key; defaults to ``accuracy``.
            num_workers: answer-checking processes.
            item_timeout: seconds one check may take before it scores 0 and its worker is replaced.
            batch_timeout: seconds a whole batch of checks may take; unfinished checks score 0.
            max_answer_chars: longer answers score 0 without being parsed.
            memory_limit_mb: address-space limit of each checking process.
            on_error: ``raise`` stops the run when the reward fails; ``zero`` scores the failing completion 0 and
                counts it in ``rewards/<name>/errors``.
        """
        super().__init__(weight=weight, name=name, on_error=on_error)
        if max_answer_chars < 1:
            raise ConfigError(f"max_answer_chars must be >= 1, got {max_answer_chars}")
        self.max_answer_chars = max_answer_chars
        self.verifier = SafeVerifier(num_workers, item_timeout, batch_timeout, memory_limit_mb)

    def __call__(self, prompts: list[str], completions: list[str], answers: list[str]) -> list[float]:
        scores = [0.0] * len(completions)
        tasks, positions = [], []
        for i, (completion, gold) in enumerate(zip(completions, answers, strict=True)):
            prediction = extract_answer(completion)
            if prediction is not None and len(prediction) <= self.max_answer_chars:
                tasks.append((prediction, gold))
                positions.append(i)
        for i, score in zip(positions, self.verifier.run(tasks)):
            scores[i] = score
        return scores

    def close(self) -> None:
        self.verifier.close()
