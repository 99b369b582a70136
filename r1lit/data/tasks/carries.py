"""Multi-digit addition where the columns carry: "What is 47 + 38?" with at least one carry.

Column carries are what make a sum hard for a small model (it must hold a digit over), so the generator draws
operands of given digit counts and keeps only sums with at least ``min_carries`` carrying columns. Exact integer
answers, deterministic from a seed.
"""

from __future__ import annotations

import random

from r1lit.data.sources import ProblemSource
from r1lit.errors import ConfigError

MAX_DRAWS = 10_000  # per problem; a setting no draw can satisfy fails instead of looping


def count_carries(numbers: list[int]) -> int:
    """Columns (ones, tens, …) of the written sum of non-negative ``numbers`` that carry into the next column.

    47 + 38: 7 + 8 = 15 carries, 4 + 3 + 1 = 8 does not: 1. 95 + 7: 5 + 7 = 12 and 9 + 1 = 10 both carry: 2.
    """
    if any(n < 0 for n in numbers):
        raise ValueError(f"count_carries needs non-negative numbers, got {numbers}")
    carries, carry, place = 0, 0, 1
    while any(n // place for n in numbers) or carry:
        column = sum(n // place % 10 for n in numbers) + carry
        carry = column // 10
        carries += carry > 0
        place *= 10
    return carries


def count_borrows(a: int, b: int) -> int:
    """Columns of the written subtraction ``a - b`` (``a >= b >= 0``) that borrow from the next column.

    85 - 19: 5 < 9 borrows, 8 - 1 = 7 >= 1 does not: 1. 100 - 1: ones and tens both borrow: 2.
    """
    if not a >= b >= 0:
        raise ValueError(f"count_borrows needs a >= b >= 0, got {a} - {b}")
    borrows, borrow, place = 0, 0, 1
    while a // place:
        top, bottom = a // place % 10 - borrow, b // place % 10
        borrow = int(top < bottom)
        borrows += borrow
        place *= 10
    return borrows


def draw_with_digits(rng: random.Random, digits: int) -> int:
    """A number with exactly ``digits`` digits (1 digit: 1..9)."""
    return rng.randint(1 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


class CarryAdditionSource(ProblemSource):
    """Problems like "What is 47 + 38?" whose written sum carries in at least ``min_carries`` columns."""

    def __init__(self, num_problems: int = 2000, digits: tuple[int, ...] = (2, 2), min_carries: int = 1, seed: int = 0):
        """
        Args:
            num_problems: how many problems to generate.
            digits: digit count of each addend, in the order written: ``(2, 2)`` gives "47 + 38", ``(2, 1)``
                "47 + 8", ``(2, 2, 2)`` three two-digit addends.
            min_carries: least number of carrying columns (0 = any sum).
            seed: generator seed; the same seed gives the same problems.
        """
        if num_problems < 1 or len(digits) < 2 or any(d < 1 for d in digits):
            raise ConfigError("num_problems >= 1 and at least two addends of >= 1 digit each are required")
        if not 0 <= min_carries <= max(digits):  # a column past every addend's digits carries only with 11+ addends
            raise ConfigError(f"min_carries must be in 0..{max(digits)} for addends of {tuple(digits)} digits")
        self.num_problems, self.digits, self.min_carries, self.seed = num_problems, tuple(digits), min_carries, seed

    def load(self) -> list[dict[str, str]]:
        rng = random.Random(self.seed)
        records = []
        for _ in range(self.num_problems):
            for _ in range(MAX_DRAWS):
                numbers = [draw_with_digits(rng, d) for d in self.digits]
                if count_carries(numbers) >= self.min_carries:
                    break
            else:
                raise ConfigError(f"no sum of {self.digits}-digit addends with {self.min_carries} carries in {MAX_DRAWS} draws")
            expr = " + ".join(map(str, numbers))
            records.append({"problem": f"What is {expr}?", "answer": str(sum(numbers))})
        return records

    def describe(self) -> str:
        return f"carry_addition({self.num_problems} problems, digits {self.digits}, >= {self.min_carries} carries)"
