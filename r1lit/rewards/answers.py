"""Pulling the final answer out of text: pure string scanning, linear time, no parsing of maths.

Used on model completions (``extract_answer``) and on dataset solutions (``last_boxed``, ``gsm8k_answer``).
"""

from __future__ import annotations

BOX_COMMANDS = ("\\boxed", "\\fbox")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` (or ``\\fbox{…}``, or ``\\boxed 5``), braces matched; None if absent or unclosed."""
    start, command = max((text.rfind(cmd), cmd) for cmd in BOX_COMMANDS)
    if start < 0:
        return None
    i = start + len(command)
    if text.startswith(" ", i):
        token = text[i:].split(maxsplit=1)
        return token[0].rstrip("$.") if token else None
    if not text.startswith("{", i):
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def extract_answer(completion: str) -> str | None:
    """The model's final answer: the last ``<answer>…</answer>``, else the last ``\\boxed{}``.

    A boxed expression inside the answer tags is unwrapped. Returns None when there is no answer.
    """
    open_at = completion.rfind("<answer>")
    if open_at >= 0:
        close_at = completion.find("</answer>", open_at)
        if close_at >= 0:
            inner = completion[open_at + len("<answer>") : close_at].strip()
            boxed = last_boxed(inner)
            return (boxed if boxed is not None else inner).strip() or None
    boxed = last_boxed(completion)
    return boxed.strip() if boxed is not None and boxed.strip() else None


def gsm8k_answer(solution: str) -> str | None:
    """GSM8K's gold: the text after the last ``####``, thousands separators removed."""
    if "####" not in solution:
        return None
    answer = solution.rsplit("####", 1)[1].strip().replace(",", "")
    return answer or None


def as_latex(answer: str) -> str:
    """Wrap an answer in ``$…$`` for math-verify's LaTeX extraction (which finds nothing in bare tags)."""
    return "$" + answer.strip().strip("$").strip() + "$"
