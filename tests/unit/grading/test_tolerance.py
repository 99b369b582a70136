"""Kind 1 of issue 15: numbers are compared with a tolerance relative to the gold's magnitude, not math-verify's
absolute one (6 decimals for floats, ~1e-15 for exact values), so small values that differ by a large factor are
different. Big numbers and exact fractions keep working."""

import pytest

from grading import grade, tagged
from r1lit.grading.tolerance import differ_relatively, smallest_exponent, verify_precision


@pytest.mark.parametrize(
    "gold, answer, expected",
    [
        ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", 0.0),  # issue input: a factor 2 at 1e-30
        ("0.0000014", "0.000001", 0.0),  # issue input: both round to 0.000001
        ("0.0000014", "0.0000014", 1.0),
        ("0.0000014", "1.4 \\times 10^{-6}", 1.0),
        ("0.0000014", "\\frac{7}{5000000}", 1.0),
        ("10^{-12}", "2 \\times 10^{-12}", 0.0),
        ("10^{-12}", "0.000000000001", 1.0),
        ("3 \\times 10^{-9}", "3.0000001 \\times 10^{-9}", 0.0),  # 3e-17 apart: relative 3e-8
        ("\\frac{1}{2004!}", "\\frac{1}{2006!}", 0.0),
        ("10^{-400}", "10^{-401}", 0.0),  # below float range
        ("\\frac{1}{10000!}", "\\frac{2}{10000!}", 0.0),  # 1e-35660: beyond any precision setting
        ("(0.00002, 0.00003)", "(0.00002, 0.00004)", 0.0),  # interval ends, set elements: the same rule
        ("\\{10^{-20}, 1\\}", "\\{2 \\cdot 10^{-20}, 1\\}", 0.0),
    ],
)
def test_small_values_are_compared_relative_to_the_gold(gold, answer, expected):
    """Guards kind 1: math-verify's absolute rounding called tiny values equal whatever their ratio."""
    assert grade(tagged(answer), gold) == expected


@pytest.mark.parametrize(
    "gold, answer, expected",
    [
        ("\\frac{1}{3}", "0.333333", 1.0),  # math-verify's documented rounding of decimals is kept for |gold| >= 0.1
        ("\\frac{1}{3}", "0.33", 0.0),
        ("12345678901234567890", "12345678901234567890", 1.0),
        ("12345678901234567890", "12345678901234567891", 0.0),  # big integers stay exact
        ("10^{20}", "100000000000000000000", 1.0),
        ("\\frac{2}{7}", "\\frac{4}{14}", 1.0),
        ("\\frac{2}{7}", "\\frac{3}{7}", 0.0),
        ("0", "0", 1.0),
        ("28\\%", "28", 1.0),  # math-verify's percentage rule survives the relative check
        ("2.5", "\\frac{5}{2}", 1.0),
    ],
)
def test_big_numbers_and_exact_fractions_keep_working(gold, answer, expected):
    """Guards the tolerance change against breaking ordinary values: exact, big and O(1) decimals grade as before."""
    assert grade(tagged(answer), gold) == expected


def test_relative_gap_by_hand():
    """Guards differ_relatively: |g - p| > 1e-5 max(|g|, |p|) for single numbers only; percentages and sets pass."""
    import sympy

    half = sympy.Rational(1, 2)
    assert not differ_relatively(sympy.Rational(1, 3), sympy.Float("0.333333"))  # gap 3.3e-7 / 0.33 = 1e-6
    assert differ_relatively(half, sympy.Float("0.50001"))  # 1e-5 / 0.50001 = 2e-5 > 1e-5
    assert not differ_relatively(half, sympy.Float("0.500001"))  # 2e-6
    assert differ_relatively(1 / sympy.factorial(2004), 1 / sympy.factorial(2006))  # relative gap ~1
    assert not differ_relatively(sympy.FiniteSet(1, 2), sympy.FiniteSet(1, 3))  # not single numbers
    assert not differ_relatively(sympy.Symbol("x"), sympy.Integer(1))
    percent = sympy.Mul(28, sympy.UnevaluatedExpr(sympy.Rational(1, 100)), evaluate=False)
    assert not differ_relatively(percent, sympy.Integer(28))


def test_precision_scales_with_the_smallest_number_in_the_gold():
    """Guards verify_precision by hand: k = max(0, -floor(log10 m) - 1) extra digits over math-verify's (6, 15)."""
    import sympy

    assert verify_precision(sympy.Integer(5)) == (6, 15)  # log10 5 -> 0: k = 0
    assert verify_precision(sympy.Rational(1, 3)) == (6, 15)  # 0.33: floor -1 -> k = 0
    assert verify_precision(sympy.Float("0.0000014")) == (11, 20)  # floor(log10 1.4e-6) = -6 -> k = 5
    assert verify_precision(sympy.Integer(2) ** -99) == (35, 44)  # 2^-99 = 1.58e-30: floor -30 -> k = 29
    assert verify_precision(sympy.Integer(0)) == (6, 15)  # no non-zero value
    assert smallest_exponent(sympy.FiniteSet(sympy.Rational(1, 1000), 50)) == -3
    assert smallest_exponent(sympy.Symbol("x")) is None
