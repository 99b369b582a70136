"""Rule-based rewards. A user's own reward subclasses ``Reward`` and is named by ``class_path`` in YAML."""

from r1lit.rewards.accuracy import AccuracyReward
from r1lit.rewards.base import Reward
from r1lit.rewards.format import FormatReward
from r1lit.rewards.overlong import OverlongPenalty

__all__ = ["Reward", "AccuracyReward", "FormatReward", "OverlongPenalty"]
