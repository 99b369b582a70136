"""Which gold answers can be graded: a gold must be a mathematical answer, not prose.

math-verify parses a bare word as a product of one-letter symbols (``Proof`` -> p·r·o·o·f), so a prose gold
passes a parse check and any anagram of it verifies. A gold whose answer part (its last run of boxes, else the
whole text) holds English words (``r1lit.grading.prose``) is therefore not gradable: the data module drops it and
counts it in its load report, and the accuracy reward scores 0 against it. ``\\text{Evelyn}`` (one word in a text
group, compared whole by math-verify) stays gradable; ``The answer is yes`` and ``Proof`` do not. A gold that
math-verify cannot parse but that is well formed (``12:00``) matches an identical normalised answer only.
"""

from __future__ import annotations

from r1lit.grading.answers import final_boxed
from r1lit.grading.normalise import clean, normalise
from r1lit.grading.prose import is_prose


def is_prose_gold(gold: str) -> bool:
    """True when the gold's answer part holds words (a sentence, or bare words like ``Proof`` or ``yes``)."""
    boxed = final_boxed(gold)
    return is_prose(clean(boxed if boxed is not None else gold))


def well_formed(answer: str) -> bool:
    """An answer a reader can take in at once: it has a letter or digit and its brackets balance. Such a gold that
    math-verify cannot parse (``12:00``) is still graded, by exact match of the normalised text."""
    depth = {"(": 0, "[": 0, "{": 0}
    closing = {")": "(", "]": "[", "}": "{"}
    for ch in answer:
        if ch in depth:
            depth[ch] += 1
        elif ch in closing:
            depth[closing[ch]] -= 1
            if depth["{"] < 0:
                return False
    return any(ch.isalnum() for ch in answer) and depth["{"] == 0 and depth["("] + depth["["] == 0


def gradable_gold(gold: str) -> str | None:
    """The gold's answer as normalised LaTeX, or None when it is prose or nothing readable is left."""
    if is_prose_gold(gold):
        return None
    return normalise(gold)
