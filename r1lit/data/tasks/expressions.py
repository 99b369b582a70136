"""Two-step expressions with a carry and a borrow: "What is 47 + 38 - 19?".

Each problem is ``a + b - c`` or ``a - b + c`` on two-digit numbers, evaluated left to right, where the addition
carries and the subtraction borrows in at least one column and no intermediate value is negative: two operations,
each with a digit to hold over, so a model that writes the steps out has something to check.
"""

from __future__ import annotations

import random

from r1lit.data.tasks.carries import MAX_DRAWS, count_borrows, count_carries, draw_with_digits
from r1lit.data.sources import ProblemSource
from r1lit.errors import ConfigError

PATTERNS = ("+-", "-+")


def two_step_value(a: int, first: str, b: int, second: str, c: int) -> int:
    """``a first b second c`` left to right (only ``+`` and ``-``): 47 + 38 - 19 = 66."""
    step = a + b if first == "+" else a - b
    return step + c if second == "+" else step - c


def has_carry_and_borrow(a: int, first: str, b: int, second: str, c: int) -> bool:
    """Whether each step of ``a first b second c`` carries (+) or borrows (-) at least once and stays >= 0.

    47 + 38 - 19: 47 + 38 carries (7 + 8), 85 - 19 borrows (5 < 9): True. 12 + 34 - 5: no carry: False.
    """
    def ok(x: int, op: str, y: int) -> bool:
        if op == "+":
            return count_carries([x, y]) > 0
        return x >= y and count_borrows(x, y) > 0

    return ok(a, first, b) and ok(a + b if first == "+" else a - b, second, c)


class TwoStepSource(ProblemSource):
    """Problems like "What is 47 + 38 - 19?": two operations on ``digits``-digit numbers, each carrying or
    borrowing, exact non-negative integer answers."""

    def __init__(self, num_problems: int = 2000, digits: int = 2, patterns: str = "+-,-+", seed: int = 0):
        """
        Args:
            num_problems: how many problems to generate.
            digits: digit count of each of the three numbers (2 = 10..99).
            patterns: comma-separated operator pairs to draw from: ``+-`` (a + b - c) and/or ``-+`` (a - b + c).
            seed: generator seed; the same seed gives the same problems.
        """
        chosen = [p.strip() for p in patterns.split(",") if p.strip()]
        if not chosen or any(p not in PATTERNS for p in chosen):
            raise ConfigError(f"patterns must be a comma-separated subset of {PATTERNS}, got {patterns!r}")
        if num_problems < 1 or digits < 2:
            raise ConfigError("num_problems >= 1 and digits >= 2 are required (one-digit numbers cannot borrow)")
        self.num_problems, self.digits, self.patterns, self.seed = num_problems, digits, chosen, seed

    def load(self) -> list[dict[str, str]]:
        rng = random.Random(self.seed)
        records = []
        for _ in range(self.num_problems):
            first, second = rng.choice(self.patterns)
            for _ in range(MAX_DRAWS):
                a, b, c = (draw_with_digits(rng, self.digits) for _ in range(3))
                if has_carry_and_borrow(a, first, b, second, c):
                    break
            else:  # pragma: no cover - every pattern has many solutions for digits >= 2
                raise ConfigError(f"no {first}{second} problem with carries found in {MAX_DRAWS} draws")
            value = two_step_value(a, first, b, second, c)
            records.append({"problem": f"What is {a} {first} {b} {second} {c}?", "answer": str(value)})
        return records

    def describe(self) -> str:
        return f"two_step({self.num_problems} problems, {self.digits}-digit numbers, patterns {','.join(self.patterns)})"
