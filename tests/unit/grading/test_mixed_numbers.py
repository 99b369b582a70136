"""Plain-text mixed numbers (Math-Verify#34): a whole number before a proper fraction is one value, while digits
left apart otherwise stay no answer (never a product)."""

import pytest

from grading import grade, tagged
from r1lit.grading.normalise import mixed_numbers, normalise


@pytest.mark.parametrize("answer, gold, expected", [
    ("11 5/6", "\\frac{71}{6}", 1.0),  # the pair: 11 + 5/6 = 71/6
    ("-2 1/2", "-\\frac{5}{2}", 1.0),
    ("3 1/4", "3.25", 1.0),
    ("1 1/2", "\\frac{3}{2}", 1.0),
    ("The answer is 7 3/8.", "\\frac{59}{8}", 1.0),  # 7·8 + 3 = 59
    ("\\boxed{5 1/2}", "5.5", 1.0),
    ("x = 4 2/5", "\\frac{22}{5}", 1.0),  # 4·5 + 2 = 22
    ("\\frac{13}{3}", "4 1/3", 1.0),  # the gold is read the same way
    ("3\\ 1/2", "\\frac{7}{2}", 1.0),  # a LaTeX space
    ("$3 1/2$", "3.5", 1.0),
    ("1 1/3 cups", "\\frac{4}{3}", 1.0),
    ("5 3\u20444", "5.75", 1.0),  # the unicode fraction slash
    ("2 2/3", "2", 0.0),  # the false-positive side: 8/3, not 2
    ("2 2/3", "\\frac{4}{3}", 0.0),  # nor the product 2·2/3
    ("2 2/3", "\\frac{2}{3}", 0.0),
    ("11 5/6", "\\frac{55}{6}", 0.0),  # nor 11·5/6
    ("2 3/2", "\\frac{7}{2}", 0.0),  # an improper fraction after a number: digits apart, no answer
    ("3 4 1/2", "\\frac{9}{2}", 0.0),  # three groups apart: no answer
])
def test_mixed_numbers_grade_by_value(answer, gold, expected):
    """Guards the mixed-number reading and keeps the digits-apart rule for everything else."""
    assert grade(tagged(answer), gold) == expected


@pytest.mark.parametrize("text, expected", [
    ("11 5/6", "\\frac{71}{6}"),
    ("-2 1/2", "-\\frac{5}{2}"),
    ("2 2/3 + 1", "\\frac{8}{3} + 1"),
    ("0 1/2", "\\frac{1}{2}"),
    ("2 3/2", "2 3/2"),  # improper
    ("10 0/3", "10 0/3"),  # no fraction part
    ("3 4 1/2", "3 4 1/2"),  # follows other digits
    ("1/2 1/3", "1/2 1/3"),  # a fraction is no whole number
    ("2^3 1/2", "2^3 1/2"),  # a power is no whole number
    ("1.5 1/2", "1.5 1/2"),  # a decimal is no whole number
    ("1 1/2x", "1 1/2x"),  # the fraction goes on: 1/(2x) or x/2, not a mixed number
    ("3~1/2", "\\frac{7}{2}"),
    ("3\\ 4 1/2", "3\\ 4 1/2"),  # follows other digits across a LaTeX space
])
def test_mixed_numbers_by_hand(text, expected):
    """Guards which spans are mixed numbers: whole number, spaces, proper fraction, nothing glued on either side."""
    assert mixed_numbers(text) == expected


@pytest.mark.parametrize("text", ["2 3/2", "3 4 1/2", "12 345 1/2", "10 0/3", "2 3"])
def test_what_is_not_a_mixed_number_stays_no_answer(text):
    """Guards the digits-apart rule around the new reading."""
    assert normalise(text) is None
