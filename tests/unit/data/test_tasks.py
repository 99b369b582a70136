"""The harder offline tasks of configs/smollm2-aha.yaml and dev/probe_tasks.py: carries counted as on paper,
answers exact, problems deterministic from a seed. Expected values are worked out by hand in the comments."""

import re

import pytest

from r1lit.data import CarryAdditionSource, TwoStepSource, WordProblemSource
from r1lit.data.tasks.carries import count_borrows, count_carries
from r1lit.data.tasks.expressions import has_carry_and_borrow, two_step_value
from r1lit.data.tasks.word_problems import STORIES
from r1lit.errors import ConfigError


def test_count_carries_by_hand():
    """Guards the carry count that decides which sums are hard enough (an off-by-one column would keep sums
    without carries, or drop the final carry out of the top column)."""
    assert count_carries([47, 38]) == 1  # 7+8=15 carries; 4+3+1=8 does not
    assert count_carries([58, 67]) == 2  # 8+7=15 carries; 5+6+1=12 carries
    assert count_carries([12, 34]) == 0  # 2+4=6, 1+3=4
    assert count_carries([95, 7]) == 2  # 5+7=12 carries; 9+1=10 carries into the hundreds
    assert count_carries([99, 99, 99]) == 2  # 9+9+9=27 carries 2; 9+9+9+2=29 carries 2: two carrying columns
    assert count_carries([500, 500]) == 1  # only the hundreds: 5+5=10
    with pytest.raises(ValueError):
        count_carries([-1, 3])


def test_count_borrows_by_hand():
    """Guards the borrow count of the two-step task (a borrow carried into the next column must lower that digit)."""
    assert count_borrows(85, 19) == 1  # 5<9 borrows; 8-1=7 >= 1 does not
    assert count_borrows(100, 1) == 2  # 0<1 borrows; 0-1<0 borrows; 1-1=0 >= 0 does not
    assert count_borrows(87, 23) == 0  # 7>=3, 8>=2
    assert count_borrows(50, 50) == 0
    assert count_borrows(61, 52) == 1  # 1<2 borrows; 6-1=5 >= 5 does not
    with pytest.raises(ValueError):
        count_borrows(3, 5)


def test_two_step_value_and_condition_by_hand():
    """Guards the two-step answers (left to right) and the filter keeping only problems that carry and borrow."""
    assert two_step_value(47, "+", 38, "-", 19) == 66  # 85 - 19
    assert two_step_value(88, "-", 69, "+", 29) == 48  # 19 + 29
    assert has_carry_and_borrow(47, "+", 38, "-", 19)  # 7+8 carries, 85-19: 5<9 borrows
    assert not has_carry_and_borrow(12, "+", 34, "-", 5)  # 2+4 does not carry
    assert not has_carry_and_borrow(47, "+", 38, "-", 14)  # 85-14: 5>=4, 8>=1: no borrow
    assert has_carry_and_borrow(88, "-", 69, "+", 29)  # 8<9 borrows; 19+29: 9+9 carries
    assert not has_carry_and_borrow(20, "-", 31, "+", 40)  # 20-31 would go negative


def _numbers(problem: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", problem)]


def test_carry_addition_source_meets_its_settings():
    """Guards the generator against sums without the asked carries, wrong digit counts or wrong golds."""
    records = CarryAdditionSource(num_problems=200, digits=(2, 1), min_carries=1, seed=5).load()
    assert records == CarryAdditionSource(num_problems=200, digits=(2, 1), min_carries=1, seed=5).load()
    assert records != CarryAdditionSource(num_problems=200, digits=(2, 1), min_carries=1, seed=6).load()
    for r in records:
        a, b = _numbers(r["problem"])
        assert r["problem"] == f"What is {a} + {b}?" and r["answer"] == str(a + b)
        assert 10 <= a <= 99 and 1 <= b <= 9 and a % 10 + b >= 10  # a one-digit addend carries only in the ones
    three = CarryAdditionSource(num_problems=50, digits=(3, 3), min_carries=2, seed=1).load()
    assert all(count_carries(_numbers(r["problem"])) >= 2 for r in three)
    with pytest.raises(ConfigError, match="min_carries"):
        CarryAdditionSource(digits=(1, 1), min_carries=2)  # one column cannot carry twice
    with pytest.raises(ConfigError):
        CarryAdditionSource(digits=(2,))


def test_two_step_source_meets_its_settings():
    """Guards the "What is a + b - c?" task: both operations carry or borrow, answers exact and non-negative."""
    records = TwoStepSource(num_problems=200, seed=3).load()
    assert records == TwoStepSource(num_problems=200, seed=3).load()
    patterns = set()
    for r in records:
        match = re.fullmatch(r"What is (\d+) ([+-]) (\d+) ([+-]) (\d+)\?", r["problem"])
        a, first, b, second, c = int(match[1]), match[2], int(match[3]), match[4], int(match[5])
        assert first != second and all(10 <= x <= 99 for x in (a, b, c))
        assert has_carry_and_borrow(a, first, b, second, c)
        assert int(r["answer"]) == two_step_value(a, first, b, second, c) >= 0
        patterns.add(first + second)
    assert patterns == {"+-", "-+"}
    assert {r["problem"][8:].split()[1] for r in TwoStepSource(num_problems=20, patterns="+-").load()} == {"+"}
    with pytest.raises(ConfigError, match="patterns"):
        TwoStepSource(patterns="*+")


def test_word_problem_stories_by_hand():
    """Guards each story's arithmetic: the text and the gold must describe the same two operations."""
    def one(story, seed=0):
        return WordProblemSource(num_problems=1, stories=story, seed=seed).load()[0]

    r = one("buy_then_give")
    a, b, c = _numbers(r["problem"])
    assert "buys" in r["problem"] and int(r["answer"]) == a + b - c >= 0
    r = one("bags_then_eat")
    a, b, c = _numbers(r["problem"])
    assert int(r["answer"]) == a * b - c > 0 and a <= 10 and b <= 10
    r = one("more_than")
    a, b = _numbers(r["problem"])
    assert int(r["answer"]) == 2 * a + b  # a, and a + b more
    r = one("two_take")
    a, b, c = _numbers(r["problem"])
    assert int(r["answer"]) == a - b - c > 0
    r = one("rows_plus")
    a, b, c = _numbers(r["problem"])
    assert int(r["answer"]) == a * b + c


def test_word_problem_source_is_deterministic_and_whole():
    """Guards against negative or fractional counts across many draws and against seed-independent output."""
    records = WordProblemSource(num_problems=300, max_number=20, seed=2).load()
    assert records == WordProblemSource(num_problems=300, max_number=20, seed=2).load()
    assert records != WordProblemSource(num_problems=300, max_number=20, seed=9).load()
    assert all(re.fullmatch(r"\d+", r["answer"]) for r in records)
    template, value = STORIES["buy_then_give"](12, 7, 5)
    text = template.format(n="Mia", p="She", p_low="she", f="Leo", i="apples", a=12, b=7, c=5)
    assert text == "Mia has 12 apples. She buys 7 more and then gives 5 to Leo. How many apples does Mia have now?"
    assert value == 14  # 12 + 7 - 5
    with pytest.raises(ConfigError, match="stories"):
        WordProblemSource(stories="dragons")
