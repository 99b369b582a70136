"""Rule-based rewards. A user's own reward subclasses ``Reward`` and is named by ``class_path`` in YAML."""

from r1lit.rewards.accuracy import AccuracyReward
from r1lit.rewards.base import Reward
from r1lit.rewards.format import FormatReward

__all__ = ["Reward", "AccuracyReward", "FormatReward"]
