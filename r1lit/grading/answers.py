"""Pulling the final answer out of text: pure string scanning, linear time, no parsing of maths.

Used on model completions (``extract_answer``), on dataset solutions (``final_boxed``, ``gsm8k_answer``) and, in
the checking worker, on both sides of a comparison (``final_answer``).

An answer in several parts is read as the list it is: boxes one after another, joined only by connectors
(commas, ``and``, ``or``, spacing, math delimiters) or sharing one math environment, are one answer
``a, b, c`` (math-verify reads that as a set or a tuple). A box separated from the next by prose is not part of it.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right

from r1lit.grading.prose import MARKUP, is_prose, word_spans
from r1lit.grading.tags import last_complete

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BOX_TOKEN = re.compile(r"\s+([^\s$]+)")  # \boxed 5
_DELIMITER = re.compile(r"\\\$|\$\$|\$|\\\[|\\\]|\\\(|\\\)")
_CLOSER = {"$$": "$$", "$": "$", "\\[": "\\]", "\\(": "\\)"}
# What may stand between two parts of one answer: spacing, commas, "and"/"or", math delimiters, alignment marks, a
# label being assigned (``y_2 =``); at most one other word, and then only beside a connector (``1 paper and 2``).
_TEXT_GROUP = re.compile(r"\\(?:text|mbox|textrm|mathrm)\s*\{([^{}]*)\}")
_LABEL = re.compile(r"[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?\s*=")
_GAP_TOKEN = re.compile(r"[,;&$~]|\\\\|\\[\[\]()]|\\q?quad(?![A-Za-z])|\\[,;:! ]|\band\b|\bor\b")
_CONNECTOR = re.compile(r",|\band\b|\bor\b")
_OR = re.compile(r"\bor\b")
_ANCHOR = re.compile(r"(?i)\b(?:final answer|answer)\b(?:\s*(?:is|was|would be|will be|:|=)\s*:?)?")
_EDGE_PUNCTUATION = " \t\r\n.,;:!?'\""
_SENTENCE_END = re.compile(r"[.!?](?:\s+|$)")
_MATHS_CHAR = re.compile(r"[0-9A-Za-z\\]")
MAX_GAP = 200


def _brace_partners(text: str) -> dict[int, int]:
    """Position of each ``{`` -> position of its matching ``}`` (unmatched ones are absent). One pass."""
    partners, stack = {}, []
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            partners[stack.pop()] = i
    return partners


def boxes(text: str) -> list[tuple[int, int, str]]:
    """The top-level ``\\boxed{…}``/``\\fbox{…}`` (and ``\\boxed 5``) as (start, end, content), in order.

    A box inside another box is part of the outer one; an unclosed box is no box (boxes inside it still count).
    """
    found, partners, covered_to = [], None, -1
    for match in _BOX.finditer(text):
        if match.start() < covered_to:
            continue
        i = match.end()
        if text.startswith("{", i):
            partners = _brace_partners(text) if partners is None else partners
            if i in partners:
                found.append((match.start(), partners[i] + 1, text[i + 1 : partners[i]]))
                covered_to = partners[i] + 1
        elif text.startswith(" ", i):
            token = _BOX_TOKEN.match(text, i)
            if token:
                found.append((match.start(), token.end(), token.group(1).rstrip(".")))
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last box, braces matched; None if there is none or the last box command is unclosed."""
    found = boxes(text)
    last_command = max((m.start() for m in _BOX.finditer(text)), default=-1)
    if not found or (last_command >= found[-1][1]):
        return None
    return found[-1][2]


def math_environments(text: str) -> list[tuple[int, int, int, int]]:
    """``$…$``, ``$$…$$``, ``\\[…\\]`` and ``\\(…\\)`` spans as (start, content start, content end, end)."""
    spans, opened = [], None
    for match in _DELIMITER.finditer(text):
        token = match.group()
        if token == "\\$":
            continue
        if opened is None:
            if token in _CLOSER:
                opened = match
        elif token == _CLOSER[opened.group()]:
            spans.append((opened.start(), opened.end(), match.start(), match.end()))
            opened = None
    return spans


def _connected(gap: str) -> bool:
    """Whether two parts of an answer with ``gap`` between them belong to one answer: only connectors, or one word
    naming the first part before a connector (``\\boxed{1} paper and \\boxed{2}``, not ``and finally``)."""
    if len(gap) > MAX_GAP:
        return False
    gap = _LABEL.sub(" ", _TEXT_GROUP.sub(r" \1 ", gap))
    gap = _GAP_TOKEN.sub(lambda m: m.group() if _CONNECTOR.fullmatch(m.group()) else " ", gap)
    rest = [t for t in gap.replace(",", " , ").split() if not _CONNECTOR.fullmatch(t)]
    if not rest:
        return True
    if len(rest) > 1 or not rest[0].isalpha():
        return False
    return _CONNECTOR.search(gap, gap.index(rest[0]) + len(rest[0])) is not None


def _outside(spans: list[tuple[int, int]], envs: list[tuple[int, int, int, int]]) -> list[tuple[int, int]]:
    """The spans that do not lie inside a math environment (both lists sorted; one sweep)."""
    kept, k = [], 0
    for a, b in spans:
        while k < len(envs) and envs[k][3] <= a:
            k += 1
        if not (k < len(envs) and envs[k][0] <= a and b <= envs[k][3]):
            kept.append((a, b))
    return kept


def final_boxed(text: str) -> str | None:
    """The last run of boxes (see the module docstring), contents joined by ``", "``; None without a box."""
    found = boxes(text)
    if not found:
        return None
    envs = math_environments(text)

    def same_env(a: tuple, b: tuple) -> bool:
        return any(s <= a[0] and b[1] <= e for s, _, _, e in envs)

    run = [found[-1]]  # built backwards from the last box
    for box in reversed(found[:-1]):
        if not (_connected(text[box[1] : run[-1][0]]) or same_env(box, run[-1])):
            break
        run.append(box)
    return ", ".join(content.strip() for _, _, content in reversed(run))


def extract_answer(completion: str) -> str | None:
    """The model's final answer: the answer part (``final_answer``) of what the last *complete*
    ``<answer>…</answer>`` pair holds. Without a complete pair, only a marked answer counts: the last run of boxes,
    else the maths after the last "answer is" / "Answer:", else the completion itself when it is all maths; a
    number somewhere in unmarked reasoning is no answer. None when there is no answer.
    """
    inner = last_complete(completion, "answer")
    answer = final_answer(inner) if inner is not None else final_answer(completion, marked_only=True)
    return answer.strip() or None if answer is not None else None


def final_answer(text: str, marked_only: bool = False) -> str | None:
    """The answer part of an answer text: its last run of boxes; else the text itself when it is all maths; else,
    for prose, the maths after the last "answer is" / "answer:" that has maths before its sentence ends (the last
    stretch of it), or failing that (unless ``marked_only``, then None) the last stretch of maths between words
    (``The answer is $5$.`` -> ``$5$``). A hedge in prose (``3 or maybe 4``) keeps every part, so that it reads as
    a list; a lone letter between words (``I``, ``a``) is not a part when there are others."""
    boxed = final_boxed(text)
    if boxed is not None:
        return boxed
    if not is_prose(text):
        return text
    envs = math_environments(text)
    outside = list(text)  # the text with the insides of math environments (and tags, for anchors) blanked
    for start, end in [(a, b) for _, a, b, _ in envs] + [m.span() for m in MARKUP.finditer(text)]:
        outside[start:end] = " " * (end - start)
    outside = "".join(outside)
    sentence_ends = [m.span() for m in _SENTENCE_END.finditer(outside)]
    cuts = sorted(_outside(word_spans(text), envs) + sentence_ends)
    parts, sentence, ends = [], 0, iter(sentence_ends)
    next_end = next(ends, None)
    for start, end in zip([0] + [b for _, b in cuts], [a for a, _ in cuts] + [len(text)]):
        while next_end is not None and next_end[1] <= start:
            sentence, next_end = sentence + 1, next(ends, None)
        piece = text[start:end]
        lead = len(piece) - len(piece.lstrip(_EDGE_PUNCTUATION + ")]"))
        piece = piece.strip(_EDGE_PUNCTUATION).lstrip(")]").rstrip("([").strip(_EDGE_PUNCTUATION)  # "5 (five)" -> 5
        if piece not in ("or", "and") and _MATHS_CHAR.search(piece):
            parts.append((start + lead, start + lead + len(piece), sentence, piece))
    parts = [p for p in parts if not (len(p[3]) == 1 and p[3].isalpha())] or parts
    if not parts:
        return None if marked_only else text
    pool = None if marked_only else parts
    starts, sentence_stops = [p[0] for p in parts], [b for _, b in sentence_ends]
    for anchor in reversed(list(_ANCHOR.finditer(outside))):
        first = last = bisect_left(starts, anchor.end())
        in_sentence = bisect_right(sentence_stops, anchor.end())
        while last < len(parts) and parts[last][2] == in_sentence:
            last += 1
        if last > first:  # the anchor's sentence has maths after it
            pool = parts[first:last]
            break
    if pool is None:
        return None
    if len(pool) > 1 and _OR.search(outside, pool[0][0], pool[-1][1]):
        return ", ".join(p[3].removeprefix("or ").removesuffix(" or") for p in pool)
    return pool[-1][3]


def gsm8k_answer(solution: str) -> str | None:
    """GSM8K's gold: the text after the last ``####``, thousands separators removed."""
    if "####" not in solution:
        return None
    answer = solution.rsplit("####", 1)[1].strip().replace(",", "")
    return answer or None
