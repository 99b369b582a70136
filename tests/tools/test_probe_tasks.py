"""dev/probe_tasks.py's summary of one task × prompt variant, worked out by hand (no model, no engine)."""

from __future__ import annotations

import pytest

from r1lit.eval.phrases import AHA_PHRASES, REFLECTION_PHRASES, PhraseMatcher
from helpers import load_tool

probe = load_tool("probe_tasks", "dev")


def test_summary_by_hand():
    """Guards the probe's figures: pass@1 over all samples, pass@k over problems, phrase rates split by correctness
    (a rate divided by all completions instead of those of its kind would hide reflection among the few correct)."""
    problems = [{"problem": "p1", "answer": "5"}, {"problem": "p2", "answer": "7"}]
    texts = ["Wait, it is 5.", "It is 4.", "Aha! 8", "Let me check: 6"]  # problem 1: right, wrong; problem 2: wrong, wrong
    matchers = {"reflection": PhraseMatcher(REFLECTION_PHRASES), "aha": PhraseMatcher(AHA_PHRASES)}
    row = probe.summarise(problems, ["q"] * 4, texts, [10, 20, 30, 40], [False, False, False, True],
                          [1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], 2, matchers)
    assert row["pass@1"] == 0.25  # 1 of 4 samples
    assert row["pass@2"] == 0.5  # problem 1 has a correct sample, problem 2 none
    assert row["mixed_groups"] == 0.5  # problem 1 is mixed (1 of 2), problem 2 all wrong
    assert row["format"] == 0.5 and row["mean_tokens"] == 25 and row["truncated"] == 0.25
    assert row["reflection_correct"] == 1.0  # "Wait" in the one correct completion
    assert row["reflection_incorrect"] == pytest.approx(1 / 3)  # "Let me check" in 1 of the 3 incorrect
    assert row["aha_correct"] == 0.0 and row["aha_incorrect"] == pytest.approx(1 / 3)
    assert row["reflection_phrases"] == {"wait": 1, "let me check": 1} and row["aha_phrases"] == {"aha": 1}


def test_summary_leaves_out_rates_of_an_empty_kind():
    """Guards against a 0 reported for "phrases among correct completions" when there were no correct ones."""
    matchers = {"reflection": PhraseMatcher(REFLECTION_PHRASES)}
    row = probe.summarise([{"problem": "p", "answer": "1"}], ["q"] * 2, ["no", "wait"], [1, 1], [False, False],
                          [0.0, 0.0], [0.0, 0.0], 2, matchers)
    assert row["reflection_correct"] is None and row["reflection_incorrect"] == 0.5
