"""How a completion is shown to people (console groups, TensorBoard text): one format for every place."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from r1lit.grpo.groups import ScoredCompletion


def clip(text: str, max_chars: int | None) -> str:
    """The text, cut at ``max_chars`` with a visible mark (None = whole)."""
    if max_chars is not None and len(text) > max_chars:
        return text[:max_chars] + " […]"
    return text


def scores_line(completion: "ScoredCompletion") -> str:
    """``reward 1.500 (accuracy=1, format=1)`` for one completion of a group."""
    scores = ", ".join(f"{k}={v:g}" for k, v in completion.scores.items())
    return f"reward {completion.reward:.3f} ({scores})"
