"""Each health rule fires on a crafted metric stream, once, and stays silent on a healthy one."""

import dataclasses

import pytest

from r1lit.errors import ConfigError
from r1lit.eval.health_rules import RULES, HealthMonitor, HealthThresholds, StepSignals

WINDOW = 4


def healthy(step: int) -> StepSignals:
    """A run that learns: some truncation, mixed groups, entropy and length steady, engine in sync."""
    return StepSignals(step=step, truncated=0.1, flat=0.4, all_wrong=0.2, all_right=0.1, accuracy=0.3 + 0.01 * step,
                       format=0.8, entropy=0.6, length=200 + (step % 3), logp_gap=2e-6 * (1 + step % 2), staleness=0,
                       lr=1e-6, steps_left=100 - step, reward_spread=1.0)


def run(stream: list[StepSignals], thresholds: HealthThresholds | None = None) -> list:
    monitor = HealthMonitor(thresholds or HealthThresholds(window=WINDOW))
    return [finding for s in stream for finding in monitor.observe(s)[0]]


def test_a_healthy_run_is_quiet():
    assert run([healthy(i) for i in range(40)]) == []


SICK = {  # rule -> how a step looks when it holds (applied from step 10 on)
    "truncated": dict(truncated=0.8),
    "no_eos": dict(truncated=1.0),
    "flat_groups": dict(flat=0.95, all_wrong=0.9, all_right=0.05),
    "template_copying": dict(format=1.0, accuracy=0.0),
    "entropy_collapse": dict(entropy=0.01),
    "length_collapse": dict(length=20.0, accuracy=0.3),  # shorter, and no more accurate than at the start
    "lr_zero": dict(lr=0.0),
    "constant_rewards": dict(reward_spread=0.0),
}


@pytest.mark.parametrize("rule", sorted(SICK))
def test_each_rule_fires_once_while_its_condition_holds(rule):
    stream = [healthy(i) for i in range(10)] + [dataclasses.replace(healthy(i), **SICK[rule]) for i in range(10, 30)]
    fired = [f for f in run(stream) if f.rule == rule]
    assert len(fired) == 1, fired
    # a window of sick steps is needed: fires at the step where the window's mean crosses the bound
    assert 10 <= fired[0].step < 10 + WINDOW + (WINDOW if rule == "length_collapse" else 0)


def test_the_messages_name_the_setting_to_change():
    expected = {"truncated": "model.sampling.max_tokens", "no_eos": "EOS", "flat_groups": "model.dynamic_sampling",
                "template_copying": "FormatReward", "entropy_collapse": "model.sampling.temperature",
                "length_collapse": "OverlongPenalty", "lr_zero": "model.scheduler", "constant_rewards": "model.rewards"}
    for rule, words in expected.items():
        stream = [healthy(i) for i in range(10)] + [dataclasses.replace(healthy(i), **SICK[rule]) for i in range(10, 30)]
        message = next(f.message for f in run(stream) if f.rule == rule)
        assert words in message and "\n" not in message, message


def test_a_rule_fires_again_only_after_its_condition_went_away():
    sick = dict(truncated=0.9)
    stream = ([dataclasses.replace(healthy(i), **sick) for i in range(10)] + [healthy(i) for i in range(10, 20)]
              + [dataclasses.replace(healthy(i), **sick) for i in range(20, 30)])
    assert [f.step for f in run(stream) if f.rule == "truncated"] == [3, 21]  # window full at 3; at 21 (0.1+0.1+0.9+0.9)/4 = 0.5


def test_flat_groups_says_whether_problems_are_too_hard_or_too_easy():
    stream = [dataclasses.replace(healthy(i), flat=1.0, all_wrong=0.0, all_right=1.0) for i in range(WINDOW)]
    (finding,) = [f for f in run(stream) if f.rule == "flat_groups"]
    assert "0% all wrong" in finding.message and "100% all right: too easy" in finding.message


def test_shorter_and_more_accurate_is_no_collapse():
    stream = [healthy(i) for i in range(10)] + [dataclasses.replace(healthy(i), length=20.0) for i in range(10, 30)]
    assert [f for f in run(stream) if f.rule == "length_collapse"] == []  # healthy()'s accuracy keeps rising


def test_lr_zero_is_silent_on_the_last_steps():
    """A cosine schedule reaches 0 at its end: no finding when no step is left."""
    stream = [dataclasses.replace(healthy(i), lr=0.0, steps_left=0) for i in range(10)]
    assert [f for f in run(stream) if f.rule == "lr_zero"] == []


def test_rules_without_their_signal_wait():
    """An engine without sampler log-probs (HF) and a run without a format reward give None: no rule guesses."""
    stream = [StepSignals(step=i) for i in range(30)]
    assert run(stream) == []


# ---- the frozen engine ------------------------------------------------------------------------------------

def test_frozen_engine_fires_after_k_consecutive_steps_above_the_bound():
    """Step 0: same weights in engine and trainer (floor 1e-5). Afterwards the trainer moves and a frozen engine
    does not: the gap grows. Bound = max(1e-3, 3 × 1e-5) = 1e-3; steps 1, 2, 3 exceed it: fires at step 3."""
    gaps = [1e-5, 2e-3, 4e-3, 6e-3, 8e-3]
    stream = [dataclasses.replace(healthy(i), logp_gap=g) for i, g in enumerate(gaps)]
    fired = [f for f in run(stream, HealthThresholds(window=WINDOW, frozen_steps=3)) if f.rule == "frozen_engine"]
    assert [f.step for f in fired] == [3]
    assert "not serving the pushed weights" in fired[0].message


def test_frozen_engine_needs_the_steps_in_a_row():
    gaps = [1e-5, 2e-3, 4e-3, 1e-5, 6e-3, 8e-3, 1e-5]  # never three in a row
    stream = [dataclasses.replace(healthy(i), logp_gap=g) for i, g in enumerate(gaps)]
    assert [f for f in run(stream) if f.rule == "frozen_engine"] == []


def test_frozen_engine_floor_is_taken_per_staleness():
    """One-step-off: step 0 is sampled from the trainer's own weights (gap 1e-5), later steps from weights one
    update older. A healthy engine's gap then holds one update of drift, growing while a warmup raises the lr
    (0.005, 0.01, 0.02), then steady. The floor at staleness 1 is the largest of its first 3 gaps, 0.02: bound 0.06."""
    gaps = [1e-5, 0.005, 0.01, 0.02, 0.025, 0.018, 0.022, 0.03, 0.02]
    stream = [dataclasses.replace(healthy(i), logp_gap=g, staleness=min(i, 1)) for i, g in enumerate(gaps)]
    assert [f for f in run(stream) if f.rule == "frozen_engine"] == []
    # a frozen engine's drift keeps growing: 0.06 (not above the bound), 0.09, 0.12, 0.15 -> fires at the third above
    frozen = stream + [dataclasses.replace(healthy(i), logp_gap=0.03 * (i - 7), staleness=1) for i in range(9, 13)]
    assert [f.step for f in run(frozen) if f.rule == "frozen_engine"] == [12]


def test_frozen_engine_ignores_the_numeric_floor_of_an_exact_engine():
    """fp32 on CPU: gaps of ~1e-6 that double are still noise, below frozen_min_gap."""
    stream = [dataclasses.replace(healthy(i), logp_gap=1e-7 * 2 ** i) for i in range(10)]
    assert [f for f in run(stream) if f.rule == "frozen_engine"] == []


def test_every_rule_has_a_sick_stream_here():
    assert {rule.name for rule in RULES} == set(SICK) | {"frozen_engine"}


def test_bad_thresholds_are_refused():
    with pytest.raises(ConfigError, match="window"):
        HealthThresholds(window=0)
    with pytest.raises(ConfigError, match="frozen_ratio"):
        HealthThresholds(frozen_ratio=0.5)


def test_constant_rewards_from_a_collapsed_policy_name_the_collapse_not_the_rewards():
    """The CPU aha run (docs/experiments/2026-12-03-health-and-base-rates.md) copied the template into every
    completion: equal rewards because every answer was the same, which is no reward bug."""
    collapsed = dict(reward_spread=0.0, entropy=0.01)
    stream = [healthy(i) for i in range(10)] + [dataclasses.replace(healthy(i), **collapsed) for i in range(10, 30)]
    (finding,) = [f for f in run(stream) if f.rule == "constant_rewards"]
    assert "a collapse, not a reward bug" in finding.message and "model.sampling.temperature" in finding.message
    assert "check model.rewards" not in finding.message
