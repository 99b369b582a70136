"""Telling words from maths: which letters in an answer are English words rather than symbols.

math-verify reads ``Proof`` as the product p·r·o·o·f, so a prose gold "parses" and any anagram of it verifies. An
answer holds *words* when, outside LaTeX commands, subscripts and ``\\text{}``-like groups, a run of letters is
four or more long (and not a maths name or a unit), is a short English word (``yes``, ``no``, ``odd``, ``is``…)
not written in capitals (unless it is the whole answer: ``NO``), or is a contraction (``it's``). Tags and special
tokens (``<think>``, ``<|im_end|>``) count as words too: they are not maths. Short runs such as ``ab``, ``xyz`` or
the segment ``NO`` in ``\\frac{NO}{BO}`` stay symbols. A ``\\text{}`` group holding one word (``\\text{Evelyn}``) is
a text answer that math-verify compares whole; one holding several words is a sentence.
"""

from __future__ import annotations

import re

MATH_NAMES = frozenset(
    "sin cos tan sec csc cot arcsin arccos arctan sinh cosh tanh log ln lg exp lim max min gcd lcm mod bmod pmod "
    "det dim deg sup inf ker arg sqrt frac dfrac pi infty oo cis".split()
)
UNITS = frozenset(
    "cm mm km kg mg ml mph ft hr hrs sec lb lbs oz sq yd mi units unit feet foot inch inches yard yards mile "
    "miles meter meters metre metres liter liters litre litres gram grams hour hours minute minutes second seconds "
    "day days week weeks month months year years dollar dollars cent cents degree degrees radian radians percent "
    "square cubic pounds ounces gallons gallon".split()
)
CONNECTORS = frozenset({"and", "or"})
SHORT_WORDS = frozenset(
    "yes no not none odd all any the is are was be it its of to we so as an if at by for on in one two six ten "
    "can but may has had why how who let our you me my us he she him his her who did get got use put say see "
    "ask try few per via yet nor too now new old way out off up do go am set sum ago".split()
)

_TEXT_GROUP = re.compile(r"\\(?:text|textrm|textbf|textit|mbox|mathrm|operatorname)\s*\{([^{}]*)\}")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_ENVIRONMENT = re.compile(r"\\(?:begin|end)\s*\{[^{}]*\}")
_SUBSCRIPT = re.compile(r"_\s*(?:\{[^{}]*\}|[A-Za-z0-9])")
_LETTERS = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")  # a contraction (it's, let's) is one word
MARKUP = re.compile(r"<\|[^<>|]{0,40}\|>|</?[A-Za-z_]{1,20}>")  # special tokens and tags: not maths


def _is_word(run: str) -> bool:
    low = run.lower()
    if "'" in run:
        return True
    if low in MATH_NAMES or low in UNITS or low in CONNECTORS:
        return False
    # Short capitals are names of points and segments (NO, BO, AB), not the words no or be.
    return len(run) >= 4 or (low in SHORT_WORDS and not run.isupper())


def _blank(match: re.Match) -> str:
    return " " * len(match.group())  # keeps every position of the text where it was


def word_spans(text: str) -> list[tuple[int, int]]:
    """Where the English words of ``text`` are (start, end), in order: bare words, plus every word of a ``\\text{}``
    group that holds a sentence."""
    spans = []
    for group in _TEXT_GROUP.finditer(text):
        runs = [r for r in _LETTERS.finditer(group.group(1)) if len(r.group()) > 1]
        runs = [r for r in runs if r.group().lower() not in CONNECTORS]
        if len(runs) > 1 and not all(r.group().lower() in UNITS for r in runs):
            spans += [(group.start(1) + r.start(), group.start(1) + r.end()) for r in runs]
    spans += [m.span() for m in MARKUP.finditer(text)]
    bare = MARKUP.sub(_blank, text)
    for pattern in (_ENVIRONMENT, _TEXT_GROUP, _COMMAND, _SUBSCRIPT):
        bare = pattern.sub(_blank, bare)
    runs = list(_LETTERS.finditer(bare))
    if len(runs) == 1 and runs[0].group().lower() in SHORT_WORDS and not bare.replace(runs[0].group(), "").strip(" .!"):
        return [runs[0].span()]  # the whole answer is one short word, even in capitals (YES, NO)
    spans += [r.span() for r in runs if _is_word(r.group())]
    return sorted(spans)


def words(text: str) -> list[str]:
    """The English words of ``text`` (see ``word_spans``)."""
    return [text[start:end] for start, end in word_spans(text)]


def is_prose(text: str) -> bool:
    """True when ``text`` holds English words (see the module docstring): a sentence, or a bare word like ``Proof``."""
    return bool(word_spans(text))
