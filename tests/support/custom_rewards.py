"""A user's own reward, living outside r1lit and named by its full class_path in YAML (as a user would)."""

from r1lit.rewards import Reward


class LengthReward(Reward):
    """Prefers short completions: 1 / (1 + characters). Gives random tiny models a reward spread to learn from."""

    def __call__(self, prompts, completions, answers):
        return [1.0 / (1.0 + len(c)) for c in completions]


class BrokenReward(Reward):
    """Raises like a reward with a bug would."""

    def __call__(self, prompts, completions, answers):
        raise KeyError("solution")


class FlakyReward(Reward):
    """Fails on the completions that contain ``trigger`` (like a parser that chokes on some inputs); scores the
    others by length like LengthReward. Extra arguments (``on_error``, ``weight``) reach the base class."""

    def __init__(self, trigger: str = "bad", **kwargs):
        super().__init__(**kwargs)
        self.trigger = trigger

    def __call__(self, prompts, completions, answers):
        for c in completions:
            if self.trigger in c:
                raise ValueError(f"cannot parse {c[:20]!r}")
        return [1.0 / (1.0 + len(c)) for c in completions]


class HalfFlatReward(Reward):
    """Scores every completion 0 on problems whose gold answer is even (a zero-spread group, no signal), and by
    length like LengthReward on the others: dynamic sampling then has groups to drop and extra rounds to run."""

    def __call__(self, prompts, completions, answers):
        return [0.0 if int(a) % 2 == 0 else 1.0 / (1.0 + len(c)) for c, a in zip(completions, answers)]
