"""Two-operation word problems about apples, coins and marbles: "Mia has 12 apples. She buys 7 more and gives 5
to Leo. How many apples does Mia have now?".

Five story shapes, each needing two operations (``a + b - c``, ``a × b - c``, ``a + (a + b)``, ``a - b - c``,
``a × b + c``); numbers drawn from small ranges so every intermediate value is a whole, non-negative count.
Exact integer answers, deterministic from a seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from r1lit.data.sources import ProblemSource
from r1lit.errors import ConfigError

NAMES = (("Mia", "She"), ("Leo", "He"), ("Ava", "She"), ("Sam", "He"), ("Zoe", "She"), ("Ben", "He"))
ITEMS = ("apples", "coins", "marbles", "pencils", "stickers", "cookies")


def _buy_then_give(a, b, c):
    return "{n} has {a} {i}. {p} buys {b} more and then gives {c} to {f}. How many {i} does {n} have now?", a + b - c


def _bags_then_eat(a, b, c):
    return "{n} buys {a} bags with {b} {i} in each bag. {p} gives away {c} of them. How many {i} does {n} have left?", a * b - c


def _more_than(a, b, c):
    return "{n} has {a} {i}. {f} has {b} more {i} than {n}. How many {i} do they have together?", a + (a + b)


def _two_take(a, b, c):
    return "There are {a} {i} in a box. {n} takes {b} and {f} takes {c}. How many {i} are left in the box?", a - b - c


def _rows_plus(a, b, c):
    return "{n} puts {i} in {a} rows of {b}. Then {p_low} adds {c} more. How many {i} are there now?", a * b + c


Story = Callable[[int, int, int], tuple[str, int]]
STORIES: dict[str, Story] = {
    "buy_then_give": _buy_then_give, "bags_then_eat": _bags_then_eat, "more_than": _more_than,
    "two_take": _two_take, "rows_plus": _rows_plus,
}


def _numbers(rng: random.Random, story: str, max_number: int) -> tuple[int, int, int]:
    """Operands for ``story`` that keep every count whole and non-negative (factors of products stay <= 10)."""
    if story in ("bags_then_eat", "rows_plus"):
        a, b = rng.randint(2, min(10, max_number)), rng.randint(2, min(10, max_number))
        c = rng.randint(1, a * b - 1) if story == "bags_then_eat" else rng.randint(1, max_number)
        return a, b, c
    if story == "two_take":
        a = rng.randint(3, max(3, 2 * max_number))
        b = rng.randint(1, a - 2)
        return a, b, rng.randint(1, a - b - 1)
    a, b = rng.randint(2, max_number), rng.randint(1, max_number)
    return a, b, rng.randint(1, a + b - 1)


class WordProblemSource(ProblemSource):
    """Short stories needing two operations (see the module docstring), answers exact non-negative integers."""

    def __init__(self, num_problems: int = 2000, max_number: int = 20, stories: str = ",".join(STORIES), seed: int = 0):
        """
        Args:
            num_problems: how many problems to generate.
            max_number: largest number drawn for a count (factors of a product are at most 10; a box in
                ``two_take`` holds up to twice this).
            stories: comma-separated story shapes to draw from: buy_then_give, bags_then_eat, more_than,
                two_take, rows_plus.
            seed: generator seed; the same seed gives the same problems.
        """
        chosen = [s.strip() for s in stories.split(",") if s.strip()]
        if not chosen or any(s not in STORIES for s in chosen):
            raise ConfigError(f"stories must be a comma-separated subset of {', '.join(STORIES)}, got {stories!r}")
        if num_problems < 1 or max_number < 3:
            raise ConfigError("num_problems >= 1 and max_number >= 3 are required")
        self.num_problems, self.max_number, self.stories, self.seed = num_problems, max_number, chosen, seed

    def load(self) -> list[dict[str, str]]:
        rng = random.Random(self.seed)
        records = []
        for _ in range(self.num_problems):
            story = rng.choice(self.stories)
            (name, pronoun), item = rng.choice(NAMES), rng.choice(ITEMS)
            friend = rng.choice([other for other, _ in NAMES if other != name])
            a, b, c = _numbers(rng, story, self.max_number)
            template, value = STORIES[story](a, b, c)
            text = template.format(n=name, p=pronoun, p_low=pronoun.lower(), f=friend, i=item, a=a, b=b, c=c)
            records.append({"problem": text, "answer": str(value)})
        return records

    def describe(self) -> str:
        return f"word_problems({self.num_problems} problems, numbers up to {self.max_number}, stories {','.join(self.stories)})"
