"""Finding reflection and "aha" phrases in completions: whole words, any case, flexible whitespace.

The seed judged the aha moment by reading completions; here a phrase set is a list of plain phrases compiled into
one regular expression. A phrase matches only as whole words (``wait`` is not found in ``awaiting``), in any
case, with any run of whitespace between its words, any apostrophe (``'`` or ``’``) for an apostrophe and an
hyphen, space or nothing for a hyphen (``re-evaluate`` also finds ``reevaluate``). Longer phrases win over their prefixes
(``but wait`` is reported rather than ``wait``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from r1lit.errors import ConfigError

__all__ = ["REFLECTION_PHRASES", "AHA_PHRASES", "WAIT_PHRASES", "PhraseMatch", "PhraseMatcher", "excerpt"]

# What R1-Zero style self-correction looks like in text (the seed's "but wait! This is incorrect" among them).
REFLECTION_PHRASES = (
    "wait", "but wait", "hold on", "let me check", "let me double-check", "let me verify", "let me recheck",
    "let me reconsider", "re-evaluate", "recheck", "double-check", "this is incorrect", "that is incorrect",
    "this is wrong", "that's wrong", "that's not right", "I made a mistake", "my mistake", "on second thought",
)
# Reflection words that untrained models use in passing (Oat-Zero's count leaves "wait" out as unreliable): the
# strict reflection rate is REFLECTION_PHRASES without these.
WAIT_PHRASES = ("wait", "but wait", "hold on")
# The "aha moment" proper: the model remarking on its own insight.
AHA_PHRASES = ("aha", "aha moment", "eureka", "now I see", "I see now", "now I understand", "I realize", "I realized")

_APOSTROPHES = "['\u2019\u2018`]"
_HYPHENS = r"(?:[-\u2010\u2011]|\s+)?"


@dataclass(frozen=True)
class PhraseMatch:
    """One occurrence: the configured phrase it stands for and where it is in the text."""

    phrase: str
    start: int
    end: int


def _phrase_pattern(phrase: str) -> str:
    """A phrase as a regex body: words joined by any whitespace, apostrophes and hyphens loosened."""
    words = phrase.split()
    parts = []
    for word in words:
        pieces = re.split(r"(['\u2019\u2018`]|-)", word)
        parts.append("".join(
            _APOSTROPHES if p in ("'", "\u2019", "\u2018", "`") else _HYPHENS if p == "-" else re.escape(p)
            for p in pieces
        ))
    body = r"\s+".join(parts)
    # Word boundaries only where the phrase itself starts / ends with a word character ("aha!" ends in "!").
    left = r"(?<!\w)" if re.match(r"\w", phrase.strip()) else ""
    right = r"(?!\w)" if re.search(r"\w$", phrase.strip()) else ""
    return left + body + right


class PhraseMatcher:
    """A compiled phrase set. ``find(text)`` lists non-overlapping matches; ``first(text)`` the earliest."""

    def __init__(self, phrases: list[str] | tuple[str, ...]):
        cleaned = [" ".join(p.split()) for p in phrases]
        if not cleaned or any(not p for p in cleaned):
            raise ConfigError(f"a phrase set needs at least one non-empty phrase, got {list(phrases)!r}")
        # Longest first, so the regex alternation prefers "but wait" to "wait" at the same position.
        self.phrases = sorted(dict.fromkeys(cleaned), key=len, reverse=True)
        groups = "|".join(f"(?P<p{i}>{_phrase_pattern(p)})" for i, p in enumerate(self.phrases))
        self._regex = re.compile(groups, re.IGNORECASE)

    def find(self, text: str) -> list[PhraseMatch]:
        return [PhraseMatch(self.phrases[int(m.lastgroup[1:])], m.start(), m.end()) for m in self._regex.finditer(text)]

    def first(self, text: str) -> PhraseMatch | None:
        m = self._regex.search(text)
        return None if m is None else PhraseMatch(self.phrases[int(m.lastgroup[1:])], m.start(), m.end())

    def __contains__(self, text: str) -> bool:
        return self._regex.search(text) is not None


def excerpt(text: str, match: PhraseMatch, context: int = 120, mark: tuple[str, str] = ("[[", "]]")) -> str:
    """The match with ``context`` characters either side, the phrase wrapped in ``mark``, newlines flattened."""
    start, end = max(0, match.start - context), min(len(text), match.end + context)
    out = (
        ("…" if start > 0 else "") + text[start:match.start] + mark[0] + text[match.start:match.end] + mark[1]
        + text[match.end:end] + ("…" if end < len(text) else "")
    )
    return " ".join(out.split())
