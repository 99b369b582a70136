"""Kind 7 of issue 15: an answer in several parts reads as the list it is, and digits written in groups (space,
thin space, comma groups of three) read as one number, never as a product of the groups."""

import pytest

from grading import grade, tagged
from r1lit.grading.answers import final_boxed
from r1lit.grading.normalise import group_digits, normalise


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\\boxed{1} and \\boxed{3}", "1, 3"),
        ("\\boxed{1}, \\boxed{2}, \\boxed{3}", "1, 2, 3"),
        ("$\\boxed{(2, 2)} \\quad \\text{and} \\quad \\boxed{(6, 2)}$", "(2, 2), (6, 2)"),
        ("$$\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 1)}$$", "(3, 3), (1, 1)"),  # one math environment
        ("\\boxed{1} papers and \\boxed{2} bins", "1, 2"),  # a word naming the first part, then a connector
        ("first \\boxed{7}, then after more work finally \\boxed{8}", "8"),  # prose between: only the last
        ("\\boxed{7} and finally \\boxed{8}", "8"),
        ("\\boxed{1} no no no \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("no box", None),
    ],
)
def test_final_run_of_boxes(text, expected):
    """Guards last-box-only reading: '\\boxed{1} and \\boxed{3}' was read as 3."""
    assert final_boxed(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("25 000", "25000"),
        ("1 000", "1000"),
        ("1\\,000", "1000"),
        ("1{,}000", "1000"),
        ("12\u2009345\u202f678", "12345678"),  # thin and narrow no-break spaces
        ("7,425,000", "7425000"),
        ("1,000.5", "1000.5"),
        ("3.141 592", "3.141592"),
        ("-2 500", "-2500"),
        ("1,3", "1,3"),  # not groups of three: a list
        ("(12,102)", "(12,102)"),  # first in a bracket: a pair
        ("5,1,000", "5,1,000"),  # after a list item
        ("0,111", "0,111"),  # a group never starts with 0
    ],
)
def test_group_digits_by_hand(text, expected):
    """Guards the digit-group reading: only a leading group of 1-3 digits followed by groups of exactly 3 joins."""
    assert group_digits(text) == expected


@pytest.mark.parametrize("text", ["2 3", "12 34", "1 0000", "4\\,5", "1 000 5"])
def test_digits_left_apart_are_no_answer(text):
    """Guards the product reading: digits that stand apart without forming groups are never multiplied."""
    assert normalise(text) is None


def test_frac_shorthand_is_not_digits_apart():
    """Guards the apart-digits rule against LaTeX's \\frac 1 2 shorthand."""
    assert normalise("\\frac 1 2") == "\\frac 1 2"
    assert grade(tagged("\\frac 1 2"), "0.5") == 1.0


@pytest.mark.parametrize(
    "answer, gold, expected",
    [
        ("\\boxed{1} and \\boxed{3}", "1, 3", 1.0),  # issue input
        ("\\boxed{3} and \\boxed{1}", "1, 3", 1.0),  # a set: order does not matter
        ("\\boxed{1}, \\boxed{3}, \\boxed{5}", "1, 3", 0.0),  # one part too many
        ("\\boxed{1}", "1, 3", 0.0),
        ("1 and 3", "1, 3", 1.0),
        ("x = 1 or x = 3", "1, 3", 1.0),
        ("\\boxed{-2} and \\boxed{1}", "1,-2", 1.0),
        ("25 000", "25000", 1.0),  # issue input
        ("1 000", "0", 0.0),  # issue input: read as 1*0 = 0, a wrong answer rewarded
        ("1 000", "1000", 1.0),
        ("2 3", "6", 0.0),  # never a product
        ("10 000", "0", 0.0),
        ("1\\,000\\,000", "10^6", 1.0),
        ("7,425,000", "7425000", 1.0),
        ("\\$1,000.99", "1000.99", 1.0),
        ("3 600 seconds", "3600", 1.0),
        ("2 500 000 dollars", "2500000", 1.0),
    ],
)
def test_multipart_and_grouped_answers_grade_by_value(answer, gold, expected):
    """Guards kind 7 end to end: lists grade as lists, grouped digits as one number, never as a product."""
    assert grade(tagged(answer), gold) == expected


def test_dataset_golds_keep_every_boxed_part(tmp_path):
    """Guards the math preset: a solution ending in several boxes keeps them all as the gold list."""
    import json

    from r1lit.data import DatasetSource

    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"problem": "roots?", "solution": "so $x = \\boxed{2}$ or $x = \\boxed{-3}$."}) + "\n")
    assert DatasetSource(str(path), preset="math").load()[0]["answer"] == "2, -3"
