"""The answer-checking worker process: ``python -m r1lit.grading.verify_worker MEMORY_MB TIMEOUT_S``.

Reads one JSON task per line on stdin — ``[prediction | null, gold]`` — and writes 1.0 or 0.0 per line on stdout;
a null prediction asks whether the gold answer can be graded (the data module's load-time check). It runs as its
own interpreter (not a fork of the trainer, not a re-import of the user's script) under an address-space limit.
"""

from __future__ import annotations

import json
import resource
import signal
import sys

from r1lit.grading.golds import gradable_gold, well_formed
from r1lit.grading.normalise import normalise
from r1lit.grading.tolerance import differ_relatively, verify_precision


def check(prediction: str | None, gold: str, timeout: int) -> float:
    """1.0 when ``prediction`` is mathematically equal to ``gold``; with ``prediction`` None, 1.0 when ``gold`` can
    be graded at all. Both sides go through the same reading: the answer part, normalised (``normalise``)."""
    from math_verify import LatexExtractionConfig, parse, verify
    from math_verify.utils import timeout as time_box  # signal-based, like math-verify's own; raises past it
    from sympy import nan, zoo

    gold_answer = gradable_gold(gold)
    if gold_answer is None:
        return 0.0
    config = [LatexExtractionConfig()]  # never ExprExtractionConfig: it runs sympy's parse_expr (Python eval)
    # No string fallback: with it any gold would "parse". A well-formed gold that does not parse is matched by text.
    gold_parsed = parse(f"${gold_answer}$", config, fallback_mode="no_fallback", parsing_timeout=timeout)
    if gold_parsed and gold_parsed[0] in (zoo, nan):  # 12:00 reads as 12/0: not a value to compare with
        gold_parsed = []
    if not gold_parsed and not well_formed(gold_answer):
        return 0.0
    if prediction is None:
        return 1.0
    answer = normalise(prediction)
    if answer is None:
        return 0.0
    if not gold_parsed:  # readable but not maths to math-verify (12:00): only the same text matches
        return 1.0 if "".join(answer.split()) == "".join(gold_answer.split()) else 0.0
    pred_parsed = parse(f"${answer}$", config, fallback_mode="no_fallback", parsing_timeout=timeout)
    if not pred_parsed or time_box(timeout)(differ_relatively)(gold_parsed[0], pred_parsed[0]):
        return 0.0
    float_rounding, numeric_precision = time_box(timeout)(verify_precision)(gold_parsed[0])
    same = verify(
        gold_parsed, pred_parsed, float_rounding=float_rounding, numeric_precision=numeric_precision,
        timeout_seconds=timeout,
    )
    return 1.0 if same else 0.0


def main() -> None:
    memory_mb, timeout = int(sys.argv[1]), int(sys.argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # so is a scheduler's SIGTERM to the job: the step in flight ends
    # with its scores. The trainer ends a worker with SIGKILL, and a worker whose trainer died sees EOF and exits.
    if memory_mb:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    import math_verify  # noqa: F401 — import before saying ready, so the parent's clock covers only checks

    print("ready", flush=True)
    for line in sys.stdin:
        try:
            prediction, gold = json.loads(line)
            result = check(prediction, gold, timeout)
        except BaseException:  # noqa: BLE001 — MemoryError, RecursionError, timeouts: all mean "not verified"
            result = 0.0
        print(result, flush=True)


if __name__ == "__main__":
    main()
