"""A sentence answer is read by meaning (antirez/ds4#321), and hedges are never paid (Visual-RFT#79): what
follows the stated answer after another word qualifies it; a hedge in a later sentence or around boxes offers
another candidate, so the answer reads as a list."""

import pytest

from grading import grade, tagged
from r1lit.grading.answers import final_answer


@pytest.mark.parametrize("answer, gold, expected", [
    ("The answer is 5, not 6.", "5", 1.0),  # the pairs
    ("The answer is 5, not 6.", "6", 0.0),
    ("The answer is 3 because 3 + 4 = 7.", "3", 1.0),
    ("The answer is 3 because 3 + 4 = 7.", "7", 0.0),
    ("The answer is 8 since 2^3 = 8 and not 9.", "8", 1.0),  # justification, then a rejected option
    ("The answer is 8 since 2^3 = 8 and not 9.", "9", 0.0),
    ("The answer is 5 when x = 2.", "5", 1.0),  # condition
    ("The answer is 5 when x = 2.", "2", 0.0),
    ("The answer is 7 (from step 3).", "7", 1.0),  # step reference
    ("The answer is 7 (from step 3).", "3", 0.0),
    ("The answer is 4, rather than 5.", "4", 1.0),
    ("The answer is 4, rather than 5.", "5", 0.0),
    ("Answer: 10, as computed in step 2.", "10", 1.0),
    ("Answer: 10, as computed in step 2.", "2", 0.0),
    ("The answer is $x = 3$ if $a = 1$.", "3", 1.0),
    ("The answer is $x = 3$ if $a = 1$.", "1", 0.0),
    ("The final answer is 6 dollars per week.", "6", 1.0),  # a unit phrase after the number
    ("It is 5, not 6.", "5", 1.0),  # no "answer is": the stretch the qualifier follows
    ("It is 5, not 6.", "6", 0.0),
    ("So x = 4 because 2x = 8.", "4", 1.0),
    ("So x = 4 because 2x = 8.", "8", 0.0),
    ("The answer is: 5 \u2014 not 6", "5", 1.0),  # a dash before the rejected option
    ("The answer is: 5 \u2014 not 6", "6", 0.0),
    ("The answer is \u20133, not 3.", "-3", 1.0),  # an en dash as the minus sign stays
    ("Final Answer: The volume of $ABCDEFGH$ is 120.", "120", 1.0),  # a subject before "is" is not the answer
    ("The answer is 3, 4 and 5.", "3, 4, 5", 1.0),  # a list stays a list
    ("The answer is 3, 4 and 5.", "5", 0.0),
])
def test_the_stated_answer_is_graded_not_what_follows_it(answer, gold, expected):
    """Guards reading by position: a qualifier, rejected option, justification, condition or step reference after
    the stated answer is not graded as the answer."""
    assert grade(tagged(answer), gold) == expected


HEDGES = [
    "The answer is 5. Or maybe 6.",  # the two
    "\\boxed{5} or maybe \\boxed{6}",
    "The answer is 5. Perhaps 6.",
    "The answer is 5. It might also be 6.",
    "The answer is 5. It may be 6.",
    "The answer is 5; alternatively, 6.",
    "The answer is 5. Or maybe the answer is 6.",
    "Maybe 5. Or maybe the answer is 6.",
    "The answer is 5. I am not sure, it could be 6.",
    "Maybe 5. Or 6.",
    "\\boxed{5}. Or maybe \\boxed{6}.",
    "\\boxed{5}, possibly \\boxed{6}",
    "\\boxed{5} (or \\boxed{6})",
    "\\boxed{5} or maybe 6",
    "\\boxed{5}. Maybe 6 though.",
    "$5$. Or possibly $6$.",
    "\\boxed{5} or 6",  # a plain candidate after a box
    "x = 5. Or x = 6.",  # all maths, two sentences
    "The answer is 5, or possibly 6.",
    "The answer is 5. Or is it 6?",
    "\\boxed{5}\n\nHmm, maybe it's \\boxed{6}",
]


@pytest.mark.parametrize("answer", HEDGES)
@pytest.mark.parametrize("gold", ["5", "6"])
def test_hedges_across_sentences_and_boxes_are_never_paid(answer, gold):
    """Guards listing candidates as a reward hack: neither candidate of a hedge equals a single gold."""
    assert grade(tagged(answer), gold) == 0.0


@pytest.mark.parametrize("answer, gold", [
    ("The answer is 5. Check: 2 + 3 = 5.", "5"),  # a check restates, it does not hedge
    ("\\boxed{5}, not 6", "5"),  # a rejected option after a box
    ("The answer is 5. Actually, the answer is 6.", "6"),  # a correction: the last stated answer
    ("\\boxed{7} and finally \\boxed{8}", "8"),
    ("The answer is 5. If x = 2, it is 6.", "5"),  # a condition in a later sentence offers no candidate
    ("The answer is 10, since 2 \\times 5 = 10. I hope it is correct.", "10"),
    ("\\boxed{5}. This could be verified by substituting 5 back.", "5"),  # a qualifier governs the maths
    ("The answer is 5. This is probably the intended reading since 5 = 10/2.", "5"),
    ("The answer is 12. Either way, we get 12.", "12"),
    ("\\boxed{5}. Otherwise the sum would be 7.", "5"),  # a counterfactual, not a candidate
])
def test_what_is_not_a_hedge_is_still_paid(answer, gold):
    """Guards the other side: checks, rejections, corrections and conditions leave a single answer."""
    assert grade(tagged(answer), gold) == 1.0


@pytest.mark.parametrize("text, expected", [
    ("The answer is 5, not 6.", "5"),
    ("The answer is 3 because 3 + 4 = 7.", "3"),
    ("The answer is 5. Or maybe 6.", "5, 6"),
    ("\\boxed{5} or maybe \\boxed{6}", "5, 6"),
    ("The answer is 5, not 6 or 7.", "5"),  # everything after the qualifier in its sentence is qualifier
    ("The answer is 5 or maybe 6", "5, 6"),
    ("It is 5 (not 6)", "5"),
    ("first 7, then 8", "8"),
    ("the number is not 10 which is 1,000.99", "1,000.99"),
])
def test_final_answer_by_hand(text, expected):
    """Guards the reading itself (what reaches math-verify)."""
    assert final_answer(text) == expected
