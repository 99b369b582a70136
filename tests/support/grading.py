"""Grading one completion in this process, the way AccuracyReward's workers do (no pool: fast, for pure tests)."""

from r1lit.grading.answers import extract_answer
from r1lit.grading.verify_worker import check


def grade(completion: str, gold: str) -> float:
    """AccuracyReward's score for one pair: extract the answer, then the worker's check (1.0 or 0.0)."""
    answer = extract_answer(completion)
    return 0.0 if answer is None else check(answer, gold, timeout=3)


def tagged(answer: str) -> str:
    """A completion in the R1-Zero format with ``answer`` in the answer tags."""
    return f"<think>working</think>\n<answer>{answer}</answer>"
