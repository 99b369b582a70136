"""Kind 2 of issue 15: presentation around an answer (markdown, delimiters, trailing punctuation, \\text units,
unicode maths, sentences) is removed by one normalisation before parsing, applied alike to gold and prediction.
Hedges stay wrong."""

import pytest

from grading import grade, tagged
from r1lit.grading.normalise import normalise


@pytest.mark.parametrize(
    "text, expected",
    [
        ("**73**", "73"),
        ("__73__", "73"),
        ("`73`", "73"),
        ("\\[ 5 \\]", "5"),
        ("\\( 5 \\)", "5"),
        ("$$5$$", "5"),
        ("$5$.", "5"),
        ("5.", "5"),
        (".5", ".5"),  # a leading point is a decimal point
        ("\\$3.50", "3.50"),
        ("−3", "-3"),
        ("2√3", "2\\sqrt{3}"),
        ("√(x+1)", "\\sqrt{x+1}"),
        ("x²", "x^{2}"),
        ("½", "\\frac{1}{2}"),
        ("6 × 7", "6 \\times 7"),
        ("90°", "90^{\\circ}"),
        ("x <= 3", "x \\le 3"),
        ("１２", "12"),  # fullwidth digits
        ("1 - \\frac{1}{\\mathrm{e}}", "1 - \\frac{1}{e}"),
        ("\\textbf{1.5}", "1.5"),
        ("The answer is $5$.", "5"),
        ("1e-05", "0.00001"),
        ("= 4", "4"),
    ],
)
def test_normalise_by_hand(text, expected):
    """Guards each presentation step against the raw '$…$' wrapping, which could not parse '**73**' or '\\[ 5 \\]'."""
    assert normalise(text) == expected


@pytest.mark.parametrize(
    "answer, gold, expected",
    [
        ("**73**", "73", 1.0),  # issue input
        ("\\[ 5 \\]", "5", 1.0),  # issue input
        ("$\\frac{3}{4}$.", "\\frac34", 1.0),
        ("The answer is $12$.", "12", 1.0),
        ("Answer: \\( x = 2 \\)", "2", 1.0),
        ("`42`", "42", 1.0),
        ("12 \\text{ cm}", "12", 1.0),
        ("15\\text{ cm}^2", "15", 1.0),
        ("\\$7.25", "7.25", 1.0),
        ("−\\frac{1}{2}", "-\\frac{1}{2}", 1.0),
        ("3√2", "3\\sqrt{2}", 1.0),
        ("π/2", "\\frac{\\pi}{2}", 1.0),
        ("x ≥ 5", "x \\ge 5", 1.0),
        ("2½", "\\frac{5}{2}", 1.0),
        ("5 (five)", "5", 1.0),
        ("15 square units", "15", 1.0),
        ("12 cm^2", "12", 1.0),
        ("**Answer:** 42", "42", 1.0),
        ("*42*", "42", 1.0),
        ("**7**.", "8", 0.0),  # presentation removed, the value still has to be right
    ],
)
def test_presentation_does_not_change_the_grade(answer, gold, expected):
    """Guards kind 2: the same value in markdown, delimiters, a sentence or unicode scores as the bare value."""
    assert grade(tagged(answer), gold) == expected


@pytest.mark.parametrize(
    "answer, gold",
    [
        ("3, 4", "3"),
        ("3 or 4", "3"),
        ("3 or 4", "4"),
        ("$3$ or $4$", "4"),
        ("It is 3 or maybe 4", "4"),
        ("\\boxed{3} or \\boxed{4}", "3"),
        ("3, 4, 5", "5"),
    ],
)
def test_hedges_stay_wrong(answer, gold):
    """Guards against normalisation that picks one value out of a hedge: a list never equals a single gold."""
    assert grade(tagged(answer), gold) == 0.0


def test_the_gold_gets_the_same_normalisation():
    """Guards asymmetric reading: golds written with delimiters or markdown grade like bare ones."""
    assert grade(tagged("5"), "\\[ 5 \\]") == 1.0
    assert grade(tagged("73"), "**73**") == 1.0
    assert grade(tagged("\\frac{1}{2}"), "$\\frac{1}{2}$.") == 1.0
