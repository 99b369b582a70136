"""Rewards: format, answer extraction, accuracy with math-verify, and what a hostile answer cannot do."""

import time

import pytest

from r1lit.rewards import AccuracyReward, FormatReward, Reward
from r1lit.grading.answers import extract_answer, gsm8k_answer, last_boxed
from r1lit.rewards.scoring import RewardError, score_completions
from r1lit.grading.verifier import SafeVerifier


@pytest.fixture(scope="module")
def accuracy():
    reward = AccuracyReward()
    yield reward
    reward.close()


def test_format_reward_strict_pattern():
    good = "<think>2 and 3 make 5</think>\n<answer>5</answer>"
    cases = {
        good: 1.0,
        "<think>multi\nline</think><answer>5</answer>": 1.0,  # dot matches newline
        "<think>a</think> <answer>5</answer> trailing words": 0.0,
        "preamble <think>a</think><answer>5</answer>": 0.0,
        "<answer>5</answer>": 0.0,
        "<think>a</think>": 0.0,
    }
    reward = FormatReward()
    assert reward(["q"] * len(cases), list(cases), [""] * len(cases)) == list(cases.values())


def test_format_reward_counts_a_prefilled_think_tag():
    """Prompts ending in <think> (plain template, chat prefill): the model's text starts inside the tag."""
    completion = " reasoning </think> <answer>5</answer>"
    assert FormatReward()(["Assistant: <think>", "Assistant:"], [completion, completion], ["", ""]) == [1.0, 0.0]


def test_format_reward_partial_credit():
    reward = FormatReward(partial_credit=0.5)
    scores = reward(["q"] * 3, ["<think>a</think> 5", "no tags", "<think>a</think><answer>5</answer>"], [""] * 3)
    assert scores == [0.25, 0.0, 1.0]  # two of four tags × 0.5 / 4; nothing; strict match
    with pytest.raises(ValueError):
        FormatReward(partial_credit=1.5)


def test_reward_names_and_weights():
    assert AccuracyReward().name == "accuracy" and FormatReward().name == "format"
    assert FormatReward(weight=0.5, name="fmt").name == "fmt"

    class TagCountReward(Reward):
        def __call__(self, prompts, completions, answers):
            return [0.0] * len(completions)

    assert TagCountReward().name == "tag_count"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>x</think><answer> 42 </answer>", "42"),
        ("<answer>1</answer> then <answer>2</answer>", "2"),  # the last one
        ("<answer>so \\boxed{\\frac{1}{2}}</answer>", "\\frac{1}{2}"),
        ("no tags, but \\boxed{7} and finally \\boxed{8}", "8"),
        ("\\boxed{\\frac{a}{b^{2}}}", "\\frac{a}{b^{2}}"),
        ("<answer>unclosed", None),
        ("<answer></answer>", None),
        ("nothing", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_gold_extraction_of_each_preset():
    assert last_boxed("so the area is $\\boxed{12\\pi}$.") == "12\\pi"  # MATH and NuminaMath solutions
    assert last_boxed("\\boxed{1} then \\fbox{2}") == "2"
    assert last_boxed("\\boxed{unclosed") is None
    assert gsm8k_answer("Natalia sold 48/2 = 24 clips.\n#### 1,072") == "1072"  # GSM8K
    assert gsm8k_answer("no marker") is None


def test_accuracy_reward_equivalences(accuracy):
    completions = [
        "<think>half</think><answer>0.5</answer>",
        "<answer>\\frac{1}{2}</answer>",
        "<answer>1,000</answer>",
        "<answer>x = 3</answer>",
        "<answer>4</answer>",
        "I think it is 5",  # no answer
        "<answer>\\boxed{12\\pi}</answer>",
    ]
    golds = ["\\frac{1}{2}", "0.5", "1000", "3", "5", "5", "12\\pi"]
    assert accuracy(["q"] * 7, completions, golds) == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0]


def test_unparsable_gold_is_never_rewarded(accuracy):
    """A gold that does not parse to maths must not score 1.0, not even for an identical answer string."""
    assert accuracy(["q"] * 2, ["<answer>???</answer>", "<answer>\\frac{1}{</answer>"], ["???", "\\frac{1}{"]) == [0.0, 0.0]
    verifier = SafeVerifier()
    try:
        assert verifier.run([(None, "???"), (None, "\\frac{1}{2}"), (None, "")]) == [0.0, 1.0, 0.0]
    finally:
        verifier.close()


def test_adversarial_answers_end_within_deadline_score_zero_and_run_no_code(tmp_path):
    """Guards the sandbox: power towers, a 1 MB answer, 5000-deep braces and Python payloads inside <answer>."""
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    hostile = [
        "<answer>9^{9^{9^{9^{9^{9}}}}}</answer>",
        "<answer>" + "1" * 1_000_000 + "</answer>",
        "<answer>" + "{" * 5000 + "1" + "}" * 5000 + "</answer>",
        f"<answer>{payload}</answer>",
        f"<answer>\\boxed{{{payload}}}</answer>",
        f"<answer>$ {payload} $</answer>",
        "<answer>2</answer>",  # an honest answer in the same batch still gets checked
    ]
    # max_answer_chars is raised so the 1 MB and deep-brace answers reach the workers and meet the time boxes.
    reward = AccuracyReward(item_timeout=2.0, batch_timeout=20.0, max_answer_chars=2_000_000)
    try:
        start = time.monotonic()
        scores = reward(["q"] * len(hostile), hostile, ["1"] * 6 + ["2"])
        elapsed = time.monotonic() - start
    finally:
        reward.close()
    assert scores == [0.0] * 6 + [1.0]
    assert elapsed < 20.0 + 5.0  # the batch deadline plus worker start-up
    assert not marker.exists()


def test_parent_clock_kills_a_slow_check_and_recovers():
    """Guards the parent-side time box: a check past item_timeout scores 0, its worker is replaced, work goes on."""
    verifier = SafeVerifier(num_workers=1, item_timeout=0.001, batch_timeout=30.0)
    try:
        assert verifier.run([("1", "1"), ("2", "2")]) == [0.0, 0.0]
        assert verifier.timeouts == 2
        verifier.item_timeout = 4.0
        assert verifier.run([("1", "1"), ("3", "2")]) == [1.0, 0.0]
    finally:
        verifier.close()


def test_batch_deadline_scores_unfinished_items_zero():
    verifier = SafeVerifier(num_workers=1, item_timeout=4.0, batch_timeout=0.001)
    try:
        start = time.monotonic()
        assert verifier.run([(str(i), str(i)) for i in range(50)]) == [0.0] * 50
        assert time.monotonic() - start < 10.0
        assert verifier.timeouts == 50
    finally:
        verifier.close()


def test_default_answer_cap_scores_long_answers_zero_without_checking(accuracy):
    assert accuracy(["q"], ["<answer>" + "1" * 5000 + "</answer>"], ["1" * 5000]) == [0.0]


def test_a_raising_reward_names_itself_and_the_fix():
    class Broken(Reward):
        def __call__(self, prompts, completions, answers):
            raise KeyError("solution")

    with pytest.raises(RewardError, match=r"(?s)reward 'broken' \(Broken\) raised KeyError.*remove it from model.rewards"):
        score_completions([FormatReward(), Broken()], ["q"], ["<answer>1</answer>"], ["1"])


def test_a_reward_returning_the_wrong_shape_or_nan_is_rejected():
    class Short(Reward):
        def __call__(self, prompts, completions, answers):
            return [1.0]

    class NaN(Reward):
        def __call__(self, prompts, completions, answers):
            return [float("nan")] * len(completions)

    with pytest.raises(RewardError, match="returned 1 scores for 2 completions"):
        score_completions([Short()], ["q", "q"], ["a", "b"], ["1", "1"])
    with pytest.raises(RewardError, match="finite"):
        score_completions([NaN()], ["q"], ["a"], ["1"])


def test_issue_15_inputs_through_the_sandboxed_reward(accuracy):
    """Guards every failing input of issue 15 on the real path: one batch, worker processes, time boxes."""
    cases = [  # (gold, completion, expected)
        ("\\frac{1}{2^{99}}", "<answer>\\frac{1}{2^{98}}</answer>", 0.0),  # kind 1
        ("0.0000014", "<answer>0.000001</answer>", 0.0),
        ("73", "<answer>**73**</answer>", 1.0),  # kind 2
        ("5", "<answer>\\[ 5 \\]</answer>", 1.0),
        ("3", "<answer>3, 4</answer>", 0.0),
        ("3", "<answer>3 or 4</answer>", 0.0),
        ("7", "<think>t</think><answer>7</answer> wait, let me check <answer>", 1.0),  # kind 3
        ("0.00001", "<answer>0.00001</answer>", 1.0),  # kind 4 (the typed 1e-05, written exactly)
        ("Proof", "<answer>roofP</answer>", 0.0),
        ("1 - \\frac{1}{\\mathrm{e}}", "<answer>1 - \\frac{1}{\\mathrm{e}}</answer>", 1.0),
        ("1, 3", "<answer>\\boxed{1} and \\boxed{3}</answer>", 1.0),  # kind 7
        ("25000", "<answer>25 000</answer>", 1.0),
        ("0", "<answer>1 000</answer>", 0.0),
    ]
    golds, completions, expected = zip(*cases)
    assert accuracy(["q"] * len(cases), list(completions), list(golds)) == list(expected)


def test_issue_21_inputs_through_the_sandboxed_reward(accuracy):
    """Guards the grading inputs of issue 21 on the real path: one batch, worker processes, time boxes."""
    cases = [  # (gold, completion, expected)
        ("5", "<answer>The answer is 5, not 6.</answer>", 1.0),  # kind 1
        ("6", "<answer>The answer is 5, not 6.</answer>", 0.0),
        ("3", "<answer>The answer is 3 because 3 + 4 = 7.</answer>", 1.0),
        ("7", "<answer>The answer is 3 because 3 + 4 = 7.</answer>", 0.0),
        ("5", "<answer>The answer is 5. Or maybe 6.</answer>", 0.0),  # kind 2
        ("6", "<answer>\\boxed{5} or maybe \\boxed{6}</answer>", 0.0),
        ("9007199254740993", "<answer>9007199254740993</answer>", 1.0),  # kind 3: the exact gold
        ("9007199254740993", "<answer>9007199254740992</answer>", 0.0),
        ("\\frac{71}{6}", "<answer>11 5/6</answer>", 1.0),  # kind 4
        ("2", "<answer>2 2/3</answer>", 0.0),
    ]
    golds, completions, expected = zip(*cases)
    assert accuracy(["q"] * len(cases), list(completions), list(golds)) == list(expected)
