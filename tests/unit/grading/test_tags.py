"""Kind 3 of issue 15: tags are read as well-formed pairs by one scanner, shared by the format reward and answer
extraction. The answer is what the last *complete* <answer>…</answer> holds; repeated or nested blocks are not the
format."""

import pytest

from grading import grade
from r1lit.rewards import FormatReward
from r1lit.grading.answers import extract_answer
from r1lit.grading.tags import complete_pairs, is_think_then_answer, last_complete, tag_counts


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<answer>7</answer> then I went on <answer>8", "7"),  # cut inside a new answer: the complete one counts
        ("<answer>1<answer>2</answer>", "2"),  # the innermost pair
        ("<answer>1</answer><answer>2</answer>", "2"),  # the last of two
        ("</answer><answer>3</answer></answer>", "3"),  # stray closing tags are no pairs
        ("<answer>4", None),
        ("<answer>5</think>", None),
        ("<think><answer>6</answer></think>", "6"),
        ("<answer></answer>", ""),
    ],
)
def test_last_complete_answer_pair(text, expected):
    """Guards the lazy-regex reading (last opening tag): '…<answer>7</answer> …<answer>8' had no answer at all."""
    assert last_complete(text, "answer") == expected


def test_pairs_come_in_order_of_their_closing_tags():
    """Guards innermost matching: <think> and <answer> pairs are found independently, each closed by its own tag."""
    text = "<think>a</think><answer>b</answer>"
    assert [(p.name, text[p.content_start : p.content_end]) for p in complete_pairs(text)] == [("think", "a"), ("answer", "b")]


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("<think>a</think><answer>1</answer>", 1.0),
        ("<think>a</think> \n <answer>1</answer>\n", 1.0),
        ("<think>a</think><answer>1</answer><answer>2</answer>", 0.0),  # issue input: a second answer block
        ("<think>a</think><think>b</think><answer>1</answer>", 0.0),  # two think blocks
        ("<think>a<think>b</think></think><answer>1</answer>", 0.0),  # nested think
        ("<think>a</think><answer>1<answer>2</answer></answer>", 0.0),  # nested answer
        ("<think>a</think><answer>1</answer></answer>", 0.0),  # a stray closing tag
        ("<think>a</think>words<answer>1</answer>", 0.0),  # text between the blocks
        ("<think>a</think><answer>1</answer>extra", 0.0),
        ("<answer>1</answer><think>a</think>", 0.0),  # wrong order
    ],
)
def test_format_reward_is_one_think_then_one_answer(completion, expected):
    """Guards FormatReward's docstring ('and nothing else'): the lazy regex gave 1.0 to repeated answer blocks."""
    assert FormatReward()(["q"], [completion], [""]) == [expected]


def test_prefilled_think_still_counts_and_a_repeated_one_does_not():
    """Guards the prefill rule with the scanner: the prompt's <think> opens the block; a second one is a repeat."""
    reward = FormatReward()
    prompt = "Assistant: <think>"
    assert reward([prompt, prompt], ["r </think><answer>1</answer>", "<think>r </think><answer>1</answer>"], ["", ""]) == [1.0, 0.0]


def test_partial_credit_counts_tags_with_the_scanner():
    """Guards partial credit after the rewrite: each tag present exactly once earns a quarter of partial_credit."""
    assert tag_counts("<think>a</think><answer>1</answer><answer>") == {"<think>": 1, "</think>": 1, "<answer>": 2, "</answer>": 1}
    reward = FormatReward(partial_credit=0.4)
    assert reward(["q"], ["<think>a</think><answer>1</answer><answer>"], [""]) == [pytest.approx(0.3)]  # 3 of 4 tags × 0.1


@pytest.mark.parametrize(
    "completion, gold, expected",
    [
        ("<think>7</think><answer>7</answer> Let me double check. <answer>", "7", 1.0),  # issue input
        ("<think>x</think><answer>7</answer> more thoughts <answer>8", "8", 0.0),  # the unclosed 8 is no answer
        ("<answer>5</answer><answer>6</answer>", "6", 1.0),  # the last complete pair
        ("<answer>5</answer><answer>6</answer>", "5", 0.0),
        ("<answer>3<answer>4</answer>", "4", 1.0),
        ("<think>so 9</think><answer>9", "9", 0.0),  # no complete pair, nothing marked: no answer
    ],
)
def test_accuracy_reads_the_last_complete_answer(completion, gold, expected):
    """Guards extraction with rfind('<answer>'): a completion cut inside a new <answer> lost its complete answer."""
    assert grade(completion, gold) == expected


def test_is_think_then_answer_ignores_surrounding_whitespace_only():
    """Guards the 'nothing else' rule at the edges: whitespace is allowed around the format, text is not."""
    assert is_think_then_answer("\n <think>a</think><answer>b</answer> \n")
    assert not is_think_then_answer("x<think>a</think><answer>b</answer>")
    assert extract_answer("<think>a</think><answer> 42 </answer>") == "42"
