"""The answer-checking worker process: ``python -m r1lit.rewards.verify_worker MEMORY_MB TIMEOUT_S``.

Reads one JSON task per line on stdin — ``[prediction | null, gold]`` — and writes 1.0 or 0.0 per line on stdout;
a null prediction asks whether the gold answer parses. It runs as its own interpreter (not a fork of the trainer,
not a re-import of the user's script) under an address-space limit.
"""

from __future__ import annotations

import json
import resource
import signal
import sys


def check(prediction: str | None, gold: str, timeout: int) -> float:
    from math_verify import LatexExtractionConfig, parse, verify

    from r1lit.rewards.answers import as_latex

    config = [LatexExtractionConfig()]  # never ExprExtractionConfig: it runs sympy's parse_expr (Python eval)
    # Gold must parse to a maths object: with the string fallback, any gold would "parse".
    gold_parsed = parse(as_latex(gold), config, fallback_mode="no_fallback", parsing_timeout=timeout)
    if prediction is None:
        return 1.0 if gold_parsed else 0.0
    pred_parsed = parse(as_latex(prediction), config, parsing_timeout=timeout)
    return 1.0 if gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=timeout) else 0.0


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
