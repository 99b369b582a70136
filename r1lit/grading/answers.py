"""Pulling the final answer out of text: pure string scanning, linear time, no parsing of maths.

Used on model completions (``extract_answer``), on dataset solutions (``final_boxed``, ``gsm8k_answer``) and, in
the checking worker, on both sides of a comparison (``final_answer``).

An answer in several parts is read as the list it is: boxes one after another, joined only by connectors
(commas, ``and``, ``or``, spacing, math delimiters) or sharing one math environment, are one answer
``a, b, c`` (math-verify reads that as a set or a tuple). A box separated from the next by prose is not part of it.

A sentence answer is read by meaning: the stated answer is the maths right after "answer is"; what follows it
after another word (``5, not 6``; ``3 because 3 + 4 = 7``; ``5 if x > 0``; ``7 (from step 2)``) qualifies it and
is not the answer. A hedge offers another candidate (``or``, ``maybe``, ``perhaps``, ``possibly``, ``probably``,
``alternatively``, ``could be``, ``might be``, ``may be``), in the same sentence, in a later one or around boxes
(``The answer is 5. Or maybe 6.``, ``\\boxed{5} or maybe \\boxed{6}``): every candidate is kept, so the answer
reads as a list, which never equals a single gold.
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
_ANCHOR = re.compile(r"(?i)\b(?:final answer|answer)\b(?:\s*(?:is|was|would be|will be|:|=)\s*:?)?")
_EDGE_PUNCTUATION = " \t\r\n.,;:!?'\""
_WORD = re.compile(r"[a-z]+")
_OR_SENTENCE = re.compile(r"(?i)[.!?;]\s+or\b")
_LINK = re.compile(r"(?i)\s*(?:is|are|was|were|equals?|becomes?|(?:would|will|must|should) be)\s*:?\s*")
_LEADING_JOINER = re.compile(r"(?i)(?:(?:or|and)\b[\s,;:]*)+")
_TRAILING_JOINER = re.compile(r"(?i)(?:[\s,;:]*\b(?:or|and))+$")
# A clause opening with one of these qualifies what stands before it: a rejected option, a justification, a
# condition, a step reference. A clause holding a _HEDGE offers another candidate, unless a qualifier governs the
# maths after it ("this could be checked by substituting 5").
QUALIFIERS = frozenset(
    "not because since as if when whenever where from by for given using via with after before unless except "
    "than rather instead in at per like due assuming provided whereas while see step steps eq equation line ie "
    "eg".split()
)
_HEDGE = re.compile(r"(?i)\b(?:or|maybe|perhaps|possibly|probably|alternatively)\b|"
                    r"\b(?:could|might|may)\s+(?:also\s+|even\s+|well\s+|just\s+)?be\b")
_HEDGE_GATE = re.compile(r"(?i)\b(?:or|maybe|perhaps|possibly|probably|alternatively|could|might|may)\b")
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


def _hedged(clause: str) -> bool:
    """Whether ``clause`` (the words leading to a stretch of maths) offers that maths as another candidate: it
    holds a hedge (``or``, ``maybe``, ``perhaps``, ``possibly``, ``probably``, ``alternatively``, "could/might/may
    be") and neither opens with a qualifier (``because it could be``) nor has one after its last hedge
    (``this could be checked by substituting``)."""
    if len(clause) > MAX_GAP * 5 or not _HEDGE_GATE.search(clause):
        return False
    words = _WORD.findall(clause.lower())
    hedges = list(_HEDGE.finditer(clause))
    if not words or words[0] in QUALIFIERS or not hedges:
        return False
    return not any(w in QUALIFIERS for w in _WORD.findall(clause[hedges[-1].end():].lower()))


def _qualifies(gap: str) -> bool:
    """Whether the words ``gap`` between two stretches of maths open with a qualifier (``, not``, ``because``)."""
    words = _WORD.findall(gap[:MAX_GAP].lower())
    return bool(words) and words[0] in QUALIFIERS


def _last_sentence(gap: str) -> str:
    """The part of ``gap`` after its last sentence end: the clause that leads into what follows it."""
    ends = list(_SENTENCE_END.finditer(gap))
    return gap[ends[-1].end():] if ends else gap


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
    """The last run of boxes (see the module docstring; a hedge between two boxes joins them too), contents joined
    by ``", "``; None without a box."""
    found = boxes(text)
    if not found:
        return None
    envs = math_environments(text)

    def same_env(a: tuple, b: tuple) -> bool:
        return any(s <= a[0] and b[1] <= e for s, _, _, e in envs)

    run = [found[-1]]  # built backwards from the last box
    for box in reversed(found[:-1]):
        gap = text[box[1] : run[-1][0]]
        if not (_connected(gap) or same_env(box, run[-1]) or _hedged(_last_sentence(gap))):
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
    """The answer part of an answer text: its last run of boxes (with any candidate a hedge after it offers); else
    the text itself when it is all maths; else, for prose, the stated answer of the last "answer is" / "answer:"
    that has maths before its sentence ends, or failing that (unless ``marked_only``, then None) the last stretch of
    maths between words that no qualifier follows from (``The answer is $5$.`` -> ``$5$``).

    The stated answer is the first stretch of maths after the anchor, with the stretches joined to it by
    connectors (a list) or a hedge; a stretch after any other word is not the answer (module docstring). Hedged
    candidates in later sentences, and the maths before the anchor's sentence when that opens with a hedge, join
    it as a list.
    A lone letter between words (``I``, ``a``) is not a stretch of maths when there are others."""
    found = boxes(text)
    if found:
        boxed = final_boxed(text)
        tail = text[found[-1][1]:]
        if _HEDGE_GATE.search(tail):
            parts, sentence_ends, _ = _maths_parts(tail)
            boxed = ", ".join([boxed] + [parts[k][3] for k in _hedge_chain(tail, parts, sentence_ends, 0)])
        return boxed
    if not is_prose(text):
        if not _OR_SENTENCE.search(text):
            return text
        parts, _, _ = _maths_parts(text)  # "x = 5. Or x = 6.": every sentence is a candidate
        return ", ".join(p[3] for p in parts) or None
    parts, sentence_ends, outside = _maths_parts(text)
    if not parts:
        return None if marked_only else text
    starts, sentence_stops = [p[0] for p in parts], [b for _, b in sentence_ends]
    chosen = None
    anchors = list(_ANCHOR.finditer(outside))
    for n in range(len(anchors) - 1, -1, -1):
        first = _anchored(text, anchors[n], parts, starts, sentence_stops)
        if first is None:
            continue
        last = _run(text, parts, first)
        chosen = list(range(first, last + 1)) + _hedge_chain(text, parts, sentence_ends, last + 1, parts[last][2])
        lead_start = sentence_ends[parts[first][2] - 1][1] if parts[first][2] > 0 else 0
        before = bisect_left(starts, lead_start) - 1  # the last maths before the anchor's sentence
        if before >= 0 and _hedged(text[lead_start:anchors[n].start()]):  # "5. Or maybe the answer is 6."
            chosen = [before] + chosen
        break
    if chosen is None:
        if marked_only:
            return None
        last = len(parts) - 1
        while last > 0 and parts[last - 1][2] == parts[last][2] and _qualifies(text[parts[last - 1][1]:parts[last][0]]):
            last -= 1  # "5, not 6", "3 because 3 + 4 = 7": the stretch the qualifier follows
        first = last
        while first > 0:
            gap = text[parts[first - 1][1]:parts[first][0]]
            if not (_connected(gap) or _hedged(_last_sentence(gap))):
                break
            first -= 1
        chosen = list(range(first, last + 1))
    pieces = [parts[k][3] for k in chosen]
    if len(pieces) > 1:
        return ", ".join(pieces)
    return pieces[0]


def _maths_parts(text: str) -> tuple[list[tuple[int, int, int, str]], list[tuple[int, int]], str]:
    """The stretches of maths between words of a prose text as (start, end, sentence index, text), the sentence
    ends (spans), and the text with math environments and tags blanked (where anchors and sentence ends are found)."""
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
        dashes = len(piece) - len(piece.lstrip("\u2014 "))  # "5 — not 6": a dash between words is punctuation
        lead, piece = lead + dashes, piece[dashes:].rstrip("-\u2013\u2014 ").strip(_EDGE_PUNCTUATION)
        joiner = _LEADING_JOINER.match(piece)  # "Or 6": the connector belongs to the clause before the maths
        if joiner:
            lead, piece = lead + joiner.end(), piece[joiner.end():]
        piece = _TRAILING_JOINER.sub("", piece)
        if _MATHS_CHAR.search(piece):
            parts.append((start + lead, start + lead + len(piece), sentence, piece))
    parts = [p for p in parts if not (len(p[3]) == 1 and p[3].isalpha())] or parts
    return parts, sentence_ends, outside


def _anchored(text: str, anchor: re.Match, parts: list, starts: list[int], sentence_stops: list[int]) -> int | None:
    """Index of the stated answer after ``anchor`` in the anchor's sentence (its first stretch of maths, or what a
    linking verb after that gives it); None when the sentence has no maths after the anchor."""
    first = bisect_left(starts, anchor.end())
    in_sentence = bisect_right(sentence_stops, anchor.end())
    return _subject_skipped(text, parts, first) if first < len(parts) and parts[first][2] == in_sentence else None


def _subject_skipped(text: str, parts: list, first: int) -> int:
    """``Answer: the volume of $V$ is 120``: maths joined to the next stretch by a linking verb alone is the
    subject of the stated answer, which follows the verb."""
    while first + 1 < len(parts) and parts[first + 1][2] == parts[first][2] and _LINK.fullmatch(
            text[parts[first][1]:parts[first + 1][0]]):
        first += 1
    return first


def _run(text: str, parts: list, first: int) -> int:
    """Index of the last stretch joined to ``parts[first]`` in its sentence by connectors or a hedge."""
    last = first
    while last + 1 < len(parts) and parts[last + 1][2] == parts[first][2]:
        gap = text[parts[last][1]:parts[last + 1][0]]
        if not (_connected(gap) or _hedged(gap)):
            break
        last += 1
    return last


def _hedge_chain(text: str, parts: list, sentence_ends: list, begin: int, skip_sentence: int | None = None) -> list[int]:
    """Indices of the stretches from ``parts[begin]`` on that hedges offer as candidates: in each sentence (but
    ``skip_sentence``, the rest of the stated answer's, all qualifier), a stretch whose leading clause hedges, and
    the stretches joined to it, until a clause that does not."""
    chosen, sentence, open_, previous_end = [], None, False, 0
    for k in range(begin, len(parts)):
        start, end, in_sentence, _ = parts[k]
        if in_sentence == skip_sentence:
            previous_end = end
            continue
        if in_sentence != sentence:
            sentence, open_, joined = in_sentence, True, False
            if in_sentence > 0:
                previous_end = max(previous_end, sentence_ends[in_sentence - 1][1])
        clause = text[previous_end:start]
        if open_ and (_hedged(clause) or (joined and _connected(clause))):
            chosen.append(k)
            joined = True
        else:
            open_ = False
        previous_end = end
    return chosen


def gsm8k_answer(solution: str) -> str | None:
    """GSM8K's gold: the text after the last ``####``, thousands separators removed."""
    if "####" not in solution:
        return None
    answer = solution.rsplit("####", 1)[1].strip().replace(",", "")
    return answer or None
