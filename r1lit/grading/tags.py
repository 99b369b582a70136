"""Well-formed ``<think>``/``<answer>`` tag pairs: one linear scan shared by the format reward and answer extraction.

A *pair* is an opening tag and the next closing tag of the same name with no other tag of that name between
them (the innermost match). An opening tag that meets another opening tag of its name before a closing one, or
the end of the text, is left unclosed; a closing tag with no opening tag before it is stray. So in
``<answer>7</answer> and then <answer>8`` (a completion cut while it ran on) the last complete answer is ``7``,
and in ``<answer>1<answer>2</answer>`` it is ``2``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TAG_NAMES = ("think", "answer")
_TAG = re.compile(r"<(/?)(think|answer)>")


@dataclass(frozen=True)
class Tag:
    """One tag as written: its name, whether it closes, and where it sits in the text."""

    name: str
    closing: bool
    start: int
    end: int


@dataclass(frozen=True)
class Pair:
    """A complete ``<name>…</name>`` pair: ``text[content_start:content_end]`` is what it encloses."""

    name: str
    start: int  # of the opening tag
    content_start: int
    content_end: int
    end: int  # just past the closing tag


def scan_tags(text: str) -> list[Tag]:
    """Every ``<think>``, ``</think>``, ``<answer>`` and ``</answer>`` in order of appearance."""
    return [Tag(m.group(2), bool(m.group(1)), m.start(), m.end()) for m in _TAG.finditer(text)]


def complete_pairs(text: str, tags: list[Tag] | None = None) -> list[Pair]:
    """The complete pairs, in the order their closing tags appear (innermost matching, see the module docstring)."""
    pairs, open_at = [], {}
    for tag in scan_tags(text) if tags is None else tags:
        if not tag.closing:
            open_at[tag.name] = tag  # an earlier unclosed opening tag of this name stays unclosed
        elif tag.name in open_at:
            opening = open_at.pop(tag.name)
            pairs.append(Pair(tag.name, opening.start, opening.end, tag.start, tag.end))
    return pairs


def last_complete(text: str, name: str) -> str | None:
    """What the last complete ``<name>…</name>`` pair encloses (unstripped), or None when there is none."""
    pairs = [p for p in complete_pairs(text) if p.name == name]
    return text[pairs[-1].content_start : pairs[-1].content_end] if pairs else None


def is_think_then_answer(text: str) -> bool:
    """True when ``text`` (stripped) is exactly one ``<think>…</think>``, optional whitespace, then exactly one
    ``<answer>…</answer>``: no other tag anywhere (so no repeated, nested or stray blocks) and nothing outside."""
    text = text.strip()
    tags = scan_tags(text)
    shape = [(t.name, t.closing) for t in tags]
    if shape != [("think", False), ("think", True), ("answer", False), ("answer", True)]:
        return False
    return tags[0].start == 0 and tags[3].end == len(text) and not text[tags[1].end : tags[2].start].strip()


def tag_counts(text: str) -> dict[str, int]:
    """How often each of the four tags appears, keyed ``<think>``, ``</think>``, ``<answer>``, ``</answer>``."""
    counts = {f"<{'/' if closing else ''}{name}>": 0 for name in TAG_NAMES for closing in (False, True)}
    for tag in scan_tags(text):
        counts[f"<{'/' if tag.closing else ''}{tag.name}>"] += 1
    return counts
