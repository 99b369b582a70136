"""Rules that read a run's per-step numbers and name what is wrong and which setting fixes it.

Pure: a ``HealthMonitor`` takes one ``StepSignals`` per training step and returns the rules that just started to
hold (each fires once, and again only after its condition went away and came back). The ``TrainingHealth``
callback (``r1lit.callbacks.health``) feeds it from the logged metrics, prints, logs and stops.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from statistics import fmean
from typing import ClassVar, Literal

from r1lit.errors import ConfigError

RuleName = Literal["truncated", "no_eos", "flat_groups", "template_copying", "entropy_collapse", "length_collapse",
                   "frozen_engine", "lr_zero", "constant_rewards"]


@dataclass(frozen=True)
class StepSignals:
    """What the rules read of one training step; None = not measured in this run (the rules that need it wait)."""

    step: int
    truncated: float | None = None
    """Fraction of the step's completions cut at ``max_tokens`` (no EOS)."""
    flat: float | None = None
    """Fraction of groups whose rewards are all equal (zero advantage: nothing learnt from them)."""
    all_wrong: float | None = None
    """Fraction of groups whose completions are all incorrect (by the accuracy reward)."""
    all_right: float | None = None
    """Fraction of groups whose completions are all correct."""
    accuracy: float | None = None
    """Mean score of the accuracy reward."""
    format: float | None = None
    """Mean score of the format reward (1.0 = the whole format)."""
    entropy: float | None = None
    """Mean per-token entropy of the sampled completions under the policy, nats."""
    length: float | None = None
    """Mean completion length, tokens."""
    logp_gap: float | None = None
    """Mean |trainer − sampler| log-prob per completion token (``sampling/logp_diff/mean``)."""
    staleness: int = 0
    """Updates between the weights that sampled the rollout and the trainer's (one-step-off: 1)."""
    lr: float | None = None
    """Learning rate of the step's update."""
    steps_left: int | None = None
    """Optimizer steps left in the run."""
    reward_spread: float | None = None
    """Largest minus smallest reward over the whole batch (all ranks)."""


@dataclass
class HealthThresholds:
    """When each rule holds. Window rules judge the mean over the last ``window`` steps."""

    window: int = 10
    """Steps a rule's condition is averaged over before it can fire."""
    truncated: float = 0.5
    """``truncated`` fires when at least this fraction of completions hits max_tokens."""
    flat: float = 0.9
    """``flat_groups`` fires when at least this fraction of groups has zero reward spread."""
    format_high: float = 0.9
    """``template_copying``: the format reward's mean at or above this ..."""
    accuracy_low: float = 0.02
    """... while the accuracy reward's mean is at or below this."""
    entropy_low: float = 0.05
    """``entropy_collapse`` fires when the mean token entropy (nats) falls below this."""
    length_ratio: float = 0.25
    """``length_collapse`` fires when the mean completion length falls below this fraction of the first window's
    while accuracy did not rise."""
    frozen_min_gap: float = 1e-3
    """``frozen_engine``: the mean sampler–trainer log-prob gap must exceed this (nats per token) ..."""
    frozen_ratio: float = 3.0
    """... and this multiple of its floor at the same staleness (staleness 0: the first step's gap, the numeric floor
    of engine vs trainer; staleness s > 0: the largest gap of the first frozen_steps steps at s) ..."""
    frozen_steps: int = 3
    """... for this many consecutive steps."""

    def __post_init__(self) -> None:
        if self.window < 1 or self.frozen_steps < 1:
            raise ConfigError(f"health window and frozen_steps must be >= 1, got {self.window} and {self.frozen_steps}")
        if self.frozen_ratio < 1 or self.frozen_min_gap <= 0:
            raise ConfigError("health frozen_ratio must be >= 1 and frozen_min_gap > 0")


@dataclass(frozen=True)
class Finding:
    """A rule that started to hold: one line naming the cause and the setting to change."""

    rule: str
    step: int
    message: str


def _window(history: list[StepSignals], n: int, name: str) -> list[float] | None:
    """The last n values of a signal, or None when fewer than n steps measured it."""
    values = [getattr(s, name) for s in history[-n:]]
    return values if len(values) == n and None not in values else None


class Rule(ABC):
    """One condition over the run's history; ``check`` returns the message while it holds, else None."""

    name: ClassVar[str]

    @abstractmethod
    def check(self, history: list[StepSignals], t: HealthThresholds) -> str | None: ...


class Truncated(Rule):
    name = "truncated"

    def check(self, history, t):
        values = _window(history, t.window, "truncated")
        if values is not None and fmean(values) >= t.truncated:
            return (f"{fmean(values):.0%} of completions hit max_tokens over the last {t.window} steps (cut before "
                    "their answer, so they earn nothing): raise model.sampling.max_tokens")
        return None


class NoEOS(Rule):
    name = "no_eos"

    def check(self, history, t):
        values = _window(history, t.window, "truncated")
        if values is not None and min(values) >= 1.0:
            return (f"no completion ended with an end-of-sequence token in {t.window} steps: check that the chat "
                    "template's end-of-turn token is among the tokenizer's EOS ids (the engine stops only there), "
                    "and raise model.sampling.max_tokens")
        return None


class FlatGroups(Rule):
    name = "flat_groups"

    def check(self, history, t):
        values = _window(history, t.window, "flat")
        if values is None or fmean(values) < t.flat:
            return None
        wrong, right = _window(history, t.window, "all_wrong"), _window(history, t.window, "all_right")
        cause = ""
        if wrong is not None and right is not None:
            cause = f" ({fmean(wrong):.0%} all wrong: too hard; {fmean(right):.0%} all right: too easy)"
        return (f"{fmean(values):.0%} of groups have equal rewards over the last {t.window} steps{cause}, so they "
                "teach nothing: set model.dynamic_sampling (and model.difficulty_filter; if they are on, their rounds "
                "cannot find enough mixed groups), or pick a data.source nearer the model's level")


class TemplateCopying(Rule):
    name = "template_copying"

    def check(self, history, t):
        fmt, acc = _window(history, t.window, "format"), _window(history, t.window, "accuracy")
        if fmt is not None and acc is not None and fmean(fmt) >= t.format_high and fmean(acc) <= t.accuracy_low:
            return (f"format reward {fmean(fmt):.2f} with accuracy {fmean(acc):.3f} over the last {t.window} steps: "
                    "the model earns its reward by copying the prompt's template, not by answering: lower the "
                    "FormatReward's weight (or its partial_credit), or train on easier problems first")
        return None


class EntropyCollapse(Rule):
    name = "entropy_collapse"

    def check(self, history, t):
        values = _window(history, t.window, "entropy")
        if values is not None and fmean(values) < t.entropy_low:
            return (f"token entropy {fmean(values):.3f} nats over the last {t.window} steps: the policy samples "
                    "nearly one answer, groups stop differing: raise model.sampling.temperature, set "
                    "model.loss.init_args.entropy.coef or loss.epsilon_high (clip-higher), or lower the learning rate")
        return None


class LengthCollapse(Rule):
    """Shorter and no more accurate: a model that learns to answer concisely and correctly is not a collapse."""

    name = "length_collapse"

    def check(self, history, t):
        first = [s.length for s in history[: t.window] if s.length is not None]
        last = _window(history, t.window, "length")
        if len(history) < 2 * t.window or last is None or len(first) < t.window:
            return None
        accuracy_then = [s.accuracy for s in history[: t.window] if s.accuracy is not None]
        accuracy_now = _window(history, t.window, "accuracy")
        if accuracy_now is not None and accuracy_then and fmean(accuracy_now) > fmean(accuracy_then):
            return None
        if fmean(last) < t.length_ratio * fmean(first):
            return (f"mean completion length fell from {fmean(first):.0f} to {fmean(last):.0f} tokens without a gain "
                    "in accuracy: short answers are rewarded (check the rewards and an OverlongPenalty), or the "
                    "updates are too large: lower the learning rate")
        return None


class FrozenEngine(Rule):
    """After a push the engine must sample from the pushed weights. At staleness 0 (the engine holds the trainer's
    weights) a working engine's gap stays at the numeric floor of the first step, sampled before any update. At
    staleness s > 0 (one-step-off, ``sync_every_n_steps`` > 1) it also holds s updates of drift, which a warmup
    makes grow over the first steps: the floor is the largest gap of the first ``frozen_steps`` steps at that
    staleness. A gap above its floor for ``frozen_steps`` steps in a row means the engine serves old weights."""

    name = "frozen_engine"

    def check(self, history, t):
        recent = history[-t.frozen_steps:]
        if len(recent) < t.frozen_steps or any(s.logp_gap is None for s in recent):
            return None
        samples: dict[int, list[StepSignals]] = {}
        for s in history:
            if s.logp_gap is not None:
                samples.setdefault(s.staleness, []).append(s)
        bounds = []
        for s in recent:
            floor_steps = samples[s.staleness][: 1 if s.staleness == 0 else t.frozen_steps]
            if s.staleness > 0 and len(floor_steps) < t.frozen_steps:
                return None
            floor = max(f.logp_gap for f in floor_steps)
            bound = max(t.frozen_min_gap, t.frozen_ratio * floor)
            if s.step <= floor_steps[-1].step or s.logp_gap <= bound:
                return None
            bounds.append(bound)
        gaps = ", ".join(f"{s.logp_gap:.3g}" for s in recent)
        return (f"the engine is not serving the pushed weights: its log-probs differ from the trainer's by "
                f"{gaps} nats per token on {t.frozen_steps} steps in a row, above the bound {max(bounds):.3g} "
                f"(frozen_ratio × the gap when both held the same weights, at least frozen_min_gap); the weight "
                "push reaches no engine or loads nothing. Check the engine's log; to only warn, drop frozen_engine "
                "from TrainingHealth.stop_on")


class LearningRateZero(Rule):
    name = "lr_zero"

    def check(self, history, t):
        values, left = _window(history, t.window, "lr"), history[-1].steps_left if history else None
        if values is not None and max(values) == 0.0 and left is not None and left > 0:
            return (f"learning rate 0 for {t.window} steps with {left} steps left: nothing is trained; check "
                    "model.optimizer's lr and model.scheduler (its total_steps, warmup_ratio)")
        return None


class ConstantRewards(Rule):
    name = "constant_rewards"

    def check(self, history, t):
        values = _window(history, t.window, "reward_spread")
        if values is None or max(values) > 1e-9:
            return None
        entropy = _window(history, t.window, "entropy")
        if entropy is not None and fmean(entropy) < t.entropy_low:  # one answer sampled over and over: same reward
            return (f"every completion of every batch got the same reward for {t.window} steps while the policy "
                    f"samples nearly one answer (token entropy {fmean(entropy):.3f} nats): a collapse, not a reward "
                    "bug; see entropy_collapse (model.sampling.temperature, model.loss.init_args.entropy.coef), and "
                    "restart from a checkpoint before it")
        return (f"every completion of every batch got the same reward for {t.window} steps: the rewards do not "
                "depend on the completions; check model.rewards and the answers of data.source (field names, "
                "preset)")


RULES: tuple[type[Rule], ...] = (Truncated, NoEOS, FlatGroups, TemplateCopying, EntropyCollapse, LengthCollapse,
                                 FrozenEngine, LearningRateZero, ConstantRewards)


@dataclass
class HealthMonitor:
    """Feeds each step to every rule; reports a rule when its condition starts to hold."""

    thresholds: HealthThresholds = field(default_factory=HealthThresholds)
    history: list[StepSignals] = field(default_factory=list)
    active: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rules = [rule() for rule in RULES]

    def observe(self, signals: StepSignals) -> tuple[list[Finding], dict[str, bool]]:
        """Add one step. Returns the rules that just started to hold, and every rule's state (holds or not)."""
        self.history.append(signals)
        findings, states = [], {}
        for rule in self.rules:
            message = rule.check(self.history, self.thresholds)
            states[rule.name] = message is not None
            if message is not None and rule.name not in self.active:
                findings.append(Finding(rule.name, signals.step, message))
            (self.active.add if message is not None else self.active.discard)(rule.name)
        return findings, states
