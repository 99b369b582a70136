"""Offline arithmetic word problems: the no-download task of the embedded default.

A generator of our own rather than reasoning-gym: it needs no extra dependency, is deterministic from a seed,
and its difficulty is one knob, which matters because a 135M model on two CPU cores must see non-zero reward
within minutes.
"""

from __future__ import annotations

import random

from r1lit.data.sources import ProblemSource
from r1lit.errors import ConfigError

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_PHRASES = ("What is {expr}?", "Compute {expr}.", "Calculate {expr}.", "Find the value of {expr}.")


class ArithmeticSource(ProblemSource):
    """Problems like "What is 23 + 58?" with exact integer answers."""

    def __init__(self, num_problems: int = 2000, max_operand: int = 20, operations: str = "+-", num_operands: int = 2, seed: int = 0):
        """
        Args:
            num_problems: how many problems to generate.
            max_operand: operands are drawn from 1..max_operand.
            operations: which of ``+ - *`` may appear.
            num_operands: operands per problem (2 = one operation).
            seed: generator seed; the same seed gives the same problems.
        """
        bad = set(operations) - set(_OPS)
        if not operations or bad:
            raise ConfigError(f"operations must be a non-empty subset of '+-*', got {operations!r}")
        if num_problems < 1 or max_operand < 1 or num_operands < 2:
            raise ConfigError("num_problems >= 1, max_operand >= 1 and num_operands >= 2 are required")
        self.num_problems, self.max_operand = num_problems, max_operand
        self.operations, self.num_operands, self.seed = operations, num_operands, seed

    def load(self) -> list[dict[str, str]]:
        rng = random.Random(self.seed)
        records = []
        for _ in range(self.num_problems):
            numbers = [rng.randint(1, self.max_operand) for _ in range(self.num_operands)]
            ops = [rng.choice(self.operations) for _ in range(self.num_operands - 1)]
            expr = str(numbers[0])
            for op, number in zip(ops, numbers[1:]):
                expr += f" {op} {number}"
            value = eval_left_to_right_with_precedence(numbers, ops)
            records.append({"problem": rng.choice(_PHRASES).format(expr=expr), "answer": str(value)})
        return records

    def describe(self) -> str:
        return f"arithmetic({self.num_problems} problems, operands 1..{self.max_operand}, ops '{self.operations}')"


def eval_left_to_right_with_precedence(numbers: list[int], ops: list[str]) -> int:
    """Value of ``n0 op0 n1 op1 …`` with ``*`` before ``+``/``-`` (no Python eval)."""
    terms, signs = [numbers[0]], []
    for op, number in zip(ops, numbers[1:]):
        if op == "*":
            terms[-1] = terms[-1] * number
        else:
            terms.append(number)
            signs.append(op)
    total = terms[0]
    for sign, term in zip(signs, terms[1:]):
        total = _OPS[sign](total, term)
    return total
