"""One normalisation of an answer text before math-verify parses it, applied alike to gold and prediction.

``normalise`` removes presentation and keeps the maths:

- markdown emphasis and code marks (``**73**``, ``__73__``, `` `73` ``);
- common unicode maths: ``−`` ``×`` ``÷`` ``·`` ``√`` ``π`` ``∞`` ``≤`` ``≥`` ``≠`` ``±`` ``°``, vulgar fractions
  (``½``), superscripts (``x²``), currency signs, then NFKC (fullwidth ``１２``); ASCII relations ``<=``, ``>=``, ``!=``;
- digit grouping: ``25 000``, ``1\\,000``, ``1{,}000``, ``7,425,000`` (comma groups of three) are one number;
  a whole number before a proper fraction (``11 5/6``) is the mixed number it writes (``\\frac{71}{6}``); other
  digits left standing apart (``2 3``, ``2 3/2``) are no answer at all, never a product of their groups;
- the answer part of the text (``r1lit.grading.answers.final_answer``): the last run of boxes, or the maths of a
  sentence;
- math delimiters ``$ $``, ``$$ $$``, ``\\[ \\]``, ``\\( \\)`` wherever they are, escaped dollars, styling wrappers
  (``\\textbf{1.5}``, ``\\boldsymbol``), ``\\mathrm{e}`` (Euler's number), trailing sentence punctuation, a bare unit
  word after the final number (``2 500 dollars``);
- a whole answer in scientific notation (``1e-05``) as the exact decimal it names (``0.00001``).

A list stays a list: ``3, 4`` and ``3 or 4`` read as sets, which never equal a single value. Units inside
``\\text{}`` are left to math-verify, which drops them. Pure string work in linear time; nothing is evaluated.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

from r1lit.grading.answers import final_answer
from r1lit.grading.prose import UNITS

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u2012": "-", "\u00d7": " \\times ", "\u00f7": " \\div ", "\u00b7": " \\cdot ",
    "\u22c5": " \\cdot ", "\u2217": "*", "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u2264": " \\le ", "\u2265": " \\ge ",
    "\u2266": " \\le ", "\u2267": " \\ge ", "\u2260": " \\ne ", "\u00b1": "\\pm ", "\u2213": "\\mp ", "\u00b0": "^{\\circ}",
    "\u2218": "^{\\circ}", "\u2208": " \\in ", "\u222a": " \\cup ", "\u2229": " \\cap ", "\u2205": "\\emptyset ",
    "\u03b8": "\\theta ", "\u03b1": "\\alpha ", "\u03b2": "\\beta ", "\u03b3": "\\gamma ", "\u03bb": "\\lambda ",
    "\u03c6": "\\phi ", "\u03c9": "\\omega ", "\u2032": "'", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2007": " ",
    "\u2002": " ", "\u2003": " ", "\u200b": "", "\u2044": "/", "\u2215": "/", "\u20ac": "", "\u00a3": "", "\u00a5": "", "\u20b9": "",
}
_VULGAR = {"½": (1, 2), "⅓": (1, 3), "⅔": (2, 3), "¼": (1, 4), "¾": (3, 4), "⅕": (1, 5), "⅖": (2, 5), "⅗": (3, 5),
           "⅘": (4, 5), "⅙": (1, 6), "⅚": (5, 6), "⅛": (1, 8), "⅜": (3, 8), "⅝": (5, 8), "⅞": (7, 8)}
_SUPERSCRIPT = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁽⁾ⁿ", "0123456789+-()n"))
_SUBSCRIPT = dict(zip("₀₁₂₃₄₅₆₇₈₉", "0123456789"))
_ASCII_RELATIONS = {"<=": " \\le ", ">=": " \\ge ", "!=": " \\ne "}
_UNICODE_RE = re.compile("|".join(map(re.escape, list(_UNICODE) + list(_VULGAR) + list(_ASCII_RELATIONS))))
_SUPERSCRIPT_RUN = re.compile(f"[{''.join(_SUPERSCRIPT)}]+")
_SUBSCRIPT_RUN = re.compile(f"[{''.join(_SUBSCRIPT)}]+")
_ROOT = re.compile(r"([√∛∜])\s*(\([^()]*\)|\{[^{}]*\}|\d+(?:\.\d+)?|\\[A-Za-z]+|[A-Za-z])")

_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__", re.DOTALL)
_WHOLE_ITALIC = re.compile(r"^\*([^*]+)\*$")

# A space-like separator between digit groups: a space (plain, no-break, thin), or a LaTeX space or {,}.
_SEP = r"(?:[ ]?(?:\\[,;:! ]|~|\\thinspace|\{,\s*\})[ ]?|[ \u00a0\u2009\u202f\u2007])"
# Not first in a bracket or set ("(12,102)" is a pair, "\{1,234\}" a set) nor after a list item ("5,1,000").
_NOT_AFTER = r"(?<![\d.,(\[])(?<!\\\{)"
_SPACE_GROUPS = re.compile(rf"{_NOT_AFTER}([1-9]\d{{0,2}})((?:{_SEP}\d{{3}})+)(?!\d)")
_COMMA_GROUPS = re.compile(rf"{_NOT_AFTER}([1-9]\d{{0,2}})((?:,(?:\\!)?\d{{3}})+)(?!\d|,\d)")
_DECIMAL_GROUPS = re.compile(rf"(\.\d{{3}})((?:{_SEP}\d{{1,3}})+)(?!\d)")
_SEP_RE = re.compile(_SEP)
_SPACING = re.compile(r"\\[,;:! ]|~|\\thinspace|\{,\s*\}|[\s\u00a0\u2009\u202f\u2007]+")
# A whole number, spaces, a fraction: a mixed number when the fraction is proper (checked in ``mixed_numbers``).
_MIXED_SPACE = r"(?: |~|\\[ ,;:])+"  # a space, or a LaTeX one (3\ 1/2)
_MIXED = re.compile(rf"(?<![\w.,/^_{{}}\\)])(\d{{1,30}}){_MIXED_SPACE}(\d{{1,30}})/(\d{{1,30}})(?![\w./^])")
_DIGIT_BEFORE = re.compile(rf"\d{_MIXED_SPACE}$")
_APART_DIGITS = re.compile(r"\d \d")  # after every spacing became one space: linear, no backtracking
_FRAC_DIGITS = re.compile(r"\\([dtc]?frac|binom)\s*(\d)\s*(\d)")

_DELIMITERS = re.compile(r"\\\$|\$|\\\[|\\\]|\\\(|\\\)")
_MATHRM_LETTER = re.compile(r"\\(?:mathrm|operatorname)\s*\{\s*([ei])\s*\}")
_STYLE = re.compile(r"\\(?:boldsymbol|bm|displaystyle)(?![A-Za-z])\s*")
# Bold or italic around a number: math-verify would read \textbf{1.5} as a symbol named "1.5".
_STYLED_NUMBER = re.compile(r"\\(?:textbf|mathbf|textit|mathit|emph)\s*\{([^{}A-Za-z]*)\}")
_SCIENTIFIC = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)[eE][+-]?\d{1,3}")
# A bare unit word after the number that ends the answer (2 500 dollars, 15 cm^2); \text{} units are math-verify's.
_UNIT_WORD = rf"(?:{'|'.join(sorted(UNITS, key=len, reverse=True))})(?:\^\{{?\d\}}?)?"
_TRAILING_UNIT = re.compile(rf"(?<=[\d}}])(?:\s*{_UNIT_WORD}){{1,3}}$")
_TRAILING = " \t\r\n.,;:"  # sentence punctuation after an answer; a leading "." is a decimal point (.5)


def _unicode(text: str) -> str:
    def one(match: re.Match) -> str:
        ch = match.group()
        if ch in _VULGAR:
            a, b = _VULGAR[ch]
            return f"\\frac{{{a}}}{{{b}}}"
        return _UNICODE[ch] if ch in _UNICODE else _ASCII_RELATIONS[ch]

    text = _UNICODE_RE.sub(one, text)
    text = _SUPERSCRIPT_RUN.sub(lambda m: "^{" + "".join(_SUPERSCRIPT[c] for c in m.group()) + "}", text)
    text = _SUBSCRIPT_RUN.sub(lambda m: "_{" + "".join(_SUBSCRIPT[c] for c in m.group()) + "}", text)

    text = unicodedata.normalize("NFKC", text)  # what is left: fullwidth digits and letters, ligatures

    def root(match: re.Match) -> str:
        arg = match.group(2)
        if arg[0] in "({":
            arg = arg[1:-1]
        index = {"√": "", "∛": "[3]", "∜": "[4]"}[match.group(1)]
        return f"\\sqrt{index}{{{arg}}}"

    return _ROOT.sub(root, text)


def _markdown(text: str) -> str:
    text = text.replace("`", "")
    previous = None
    while previous != text:
        previous, text = text, _BOLD.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), text)
    return _WHOLE_ITALIC.sub(r"\1", text.strip().strip("*").strip())


def group_digits(text: str) -> str:
    """Digit groups written apart (``25 000``, ``1\\,000``, ``7,425,000``, ``3.141 59``) joined into one number."""
    text = _SPACE_GROUPS.sub(lambda m: m.group(1) + _SEP_RE.sub("", m.group(2)), text)
    text = _COMMA_GROUPS.sub(lambda m: m.group(1) + m.group(2).replace(",", "").replace("\\!", ""), text)
    return _DECIMAL_GROUPS.sub(lambda m: m.group(1) + _SEP_RE.sub("", m.group(2)), text)


def mixed_numbers(text: str) -> str:
    """Plain-text mixed numbers as one value: a whole number, spacing, then a proper fraction (``11 5/6`` ->
    ``\\frac{71}{6}``; ``-2 1/2`` -> ``-\\frac{5}{2}``). Not an improper fraction (``2 3/2``), nor a number that
    itself follows digits (``3 4 1/2``), nor one inside a fraction or a power: those stay digits apart."""

    def one(match: re.Match) -> str:
        whole, numerator, denominator = (int(g) for g in match.groups())
        if not 0 < numerator < denominator or _DIGIT_BEFORE.search(text, max(0, match.start() - 40), match.start()):
            return match.group()
        return f"\\frac{{{whole * denominator + numerator}}}{{{denominator}}}"

    return _MIXED.sub(one, text)


def clean(text: str) -> str:
    """The presentation steps that are safe on any text, prose included: markdown, unicode maths, mixed numbers,
    digit groups."""
    return group_digits(mixed_numbers(_unicode(_markdown(text))))


def _scientific(answer: str) -> str:
    if not _SCIENTIFIC.fullmatch(answer):
        return answer
    try:
        return format(Decimal(answer), "f")
    except InvalidOperation:
        return answer


def _digits_apart(answer: str) -> bool:
    """Digits with only spacing between them (``2 3``, ``4\\,5``), which math-verify would multiply."""
    spaced = " ".join(_SPACING.sub(" ", _FRAC_DIGITS.sub(r"\\\1{\2}{\3}", answer)).split())
    return _APART_DIGITS.search(spaced) is not None


def normalise(text: str) -> str | None:
    """The answer in ``text`` as bare LaTeX for math-verify (see the module docstring), or None when nothing is
    left or its digits stand apart (an answer is never the product of its digit groups)."""
    answer = final_answer(clean(text))
    answer = _DELIMITERS.sub(" ", answer)
    answer = _MATHRM_LETTER.sub(r"\1", answer)
    # One line: math-verify's inline maths ends at a newline.
    answer = " ".join(_STYLED_NUMBER.sub(r"\1", _STYLE.sub("", answer)).split())
    answer = _TRAILING_UNIT.sub("", answer.rstrip(_TRAILING)).rstrip(_TRAILING).lstrip(" ,;:=")
    answer = _scientific(answer)
    if not answer or _digits_apart(answer):
        return None
    return answer
