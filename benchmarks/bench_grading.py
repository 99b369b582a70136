"""Throughput of AccuracyReward (pairs/s) on a fixed mix of right, wrong and adversarial answers.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_grading.py [--pairs 2000] [--batch 256] [--workers 2]

The mix is built from a seed, so two versions of r1lit (``PYTHONPATH`` pointing at either checkout) are timed on
the same pairs. About 45 % right answers and 45 % wrong ones in the forms models write (plain, boxed, fractions,
decimals, sets, ``x = …``, markdown, sentences), 10 % adversarial (Python payloads, deep braces, power towers,
over-long answers, broken LaTeX). Pairs are unique, so the checker's de-duplication does not flatter the number.
Worker start-up is left out (a warm-up batch runs first). Prints pairs/s, the time, how many checks ran out of
time, and how often right answers scored 1 and wrong ones 0.

``--in-process`` times the same right and wrong pairs (not the adversarial ones, which need the pool's time
boxes) through the worker's own steps in this process (``extract_answer``, then ``verify_worker.check``) and
prints pairs per CPU-second: the grading cost without the pool's scheduling noise on a shared machine.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/record.py, run as a script or loaded by path
from record import write_result  # noqa: E402


def _value(rng: random.Random, k: int) -> tuple[str, str, str]:
    """(gold, right answer, wrong answer) in one of several forms; ``k`` keeps pairs unique."""
    a, b = rng.randint(1, 97) + k * 101, rng.randint(2, 89)
    form = k % 8
    if form == 0:
        return str(a), str(a), str(a + 1)
    if form == 1:
        return f"\\frac{{{a}}}{{{b}}}", f"\\dfrac{{{a}}}{{{b}}}", f"\\frac{{{a + 1}}}{{{b}}}"
    if form == 2:
        return f"{a}.5", f"{a}.50", f"{a}.05"
    if form == 3:
        return f"{a}\\sqrt{{{b}}}", f"{a}\\sqrt{{{b}}}", f"{a}\\sqrt{{{b + 1}}}"
    if form == 4:
        return f"{a}, {b}", f"{b}, {a}", f"{a}, {b + 1}"
    if form == 5:
        return str(a * 1000), f"{a * 1000:,}", f"{a * 1000 + 1:,}"
    if form == 6:
        return f"x^2 + {a}x", f"x^{{2}}+{a}x", f"x^2 - {a}x"
    return f"{a}\\pi", f"{a}\\pi", f"{a + 1}\\pi"


def _wrap(rng: random.Random, answer: str) -> str:
    style = rng.randrange(6)
    if style == 0:
        return f"<think>working</think><answer>{answer}</answer>"
    if style == 1:
        return f"<think>so</think> <answer>\\boxed{{{answer}}}</answer>"
    if style == 2:
        return f"<think>hm</think><answer>The answer is ${answer}$.</answer>"
    if style == 3:
        return f"<think>ok</think><answer>x = {answer}</answer>"
    if style == 4:
        return f"reasoning without tags, finally \\boxed{{{answer}}}"
    return f"<think>fine</think><answer>**{answer}**</answer>"


def _adversarial(k: int) -> tuple[str, str]:
    kind = k % 8
    if kind == 0:
        return f"<answer>__import__('os').system('true #{k}')</answer>", "1"
    if kind == 1 and k % 40 == 1:  # a few deep nestings: each costs a worker its time box
        depth = 100 + k % 50
        return "<answer>" + "{" * depth + str(k) + "}" * depth + "</answer>", str(k + 1)
    if kind == 2 and k % 40 == 2:  # a few power towers: each costs a worker its time box
        return f"<answer>9^{{9^{{9^{{{9 + k}}}}}}}</answer>", "1"
    if kind == 3:
        return "<answer>" + f"{k}" * 800 + "</answer>", "1"  # over max_answer_chars: scored 0 unparsed
    if kind == 4:
        return f"<answer>\\frac{{{k}}}{{</answer>", "1"
    if kind == 5:
        return f"<answer>\\boxed{{\\boxed{{\\boxed{{{k}}}}}}}</answer><answer>", str(k + 1)
    if kind == 6:
        return f"<answer>{k}e99999</answer>", "1"
    return f"<answer>$$ \\left( {k} \\right. $$ $ $ \\[ \\] \\( </answer>", "2"


def build_mix(pairs: int, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """Completions, golds and what each pair is ("right", "wrong", "adversarial")."""
    rng = random.Random(seed)
    completions, golds, kinds = [], [], []
    for k in range(pairs):
        roll = rng.random()
        if roll < 0.1:
            completion, gold = _adversarial(k)
            kind = "adversarial"
        else:
            gold, right, wrong = _value(rng, k)
            kind = "right" if roll < 0.55 else "wrong"
            completion = _wrap(rng, right if kind == "right" else wrong)
        completions.append(completion)
        golds.append(gold)
        kinds.append(kind)
    return completions, golds, kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256, help="pairs per reward call (a training step's rollout)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=None,
                        help="result file (default: benchmarks/results/<date>-<commit>-<machine>-bench_grading.json)")
    parser.add_argument("--in-process", action="store_true", help="pairs per CPU-second in this process, no pool")
    args = parser.parse_args()

    import r1lit
    from r1lit.rewards.accuracy import AccuracyReward

    completions, golds, kinds = build_mix(args.pairs, args.seed)
    if args.in_process:
        in_process(completions, golds, kinds)
        return
    reward = AccuracyReward(num_workers=args.workers)
    try:
        reward(["q"] * 4, ["<answer>1</answer>"] * 4, ["1", "2", "3", "4"])  # start the workers
        timeouts_before = reward.verifier.timeouts
        start = time.perf_counter()
        scores = []
        for i in range(0, len(completions), args.batch):
            batch = slice(i, i + args.batch)
            scores += reward(["q"] * len(completions[batch]), completions[batch], golds[batch])
        elapsed = time.perf_counter() - start
        timeouts = reward.verifier.timeouts - timeouts_before
    finally:
        reward.close()

    def rate(kind: str, score: float) -> str:
        picked = [s for s, k in zip(scores, kinds) if k == kind]
        return f"{sum(s == score for s in picked)}/{len(picked)}"

    print(f"r1lit from {r1lit.__file__}")
    print(f"{len(completions)} pairs in {elapsed:.1f}s: {len(completions) / elapsed:.0f} pairs/s "
          f"({args.workers} workers, batches of {args.batch}); {timeouts} checks ran out of time")
    print(f"right answers scored 1: {rate('right', 1.0)}; wrong scored 0: {rate('wrong', 0.0)}; "
          f"adversarial scored 0: {rate('adversarial', 0.0)}")
    write_result("bench_grading", {
        "r1lit": r1lit.__file__, "pairs": len(completions), "workers": args.workers, "batch": args.batch,
        "seed": args.seed, "seconds": elapsed, "pairs_per_s": len(completions) / elapsed, "timeouts": timeouts,
        "right_scored_1": rate("right", 1.0), "wrong_scored_0": rate("wrong", 0.0),
        "adversarial_scored_0": rate("adversarial", 0.0)}, args.results)


def in_process(completions: list[str], golds: list[str], kinds: list[str]) -> None:
    """The right and wrong pairs through extraction and the worker's check in this process, timed in CPU seconds."""
    import r1lit
    from r1lit.grading.answers import extract_answer
    from r1lit.grading.verify_worker import check

    pairs = [(c, g, k) for c, g, k in zip(completions, golds, kinds) if k != "adversarial"]
    check("1", "1", 2)  # imports math-verify and sympy outside the clock
    start = time.process_time()
    scores = []
    for completion, gold, _ in pairs:
        answer = extract_answer(completion)
        scores.append(0.0 if answer is None or len(answer) > 1000 else check(answer, gold, 2))
    cpu = time.process_time() - start
    right = [s for s, (_, _, k) in zip(scores, pairs) if k == "right"]
    print(f"r1lit from {r1lit.__file__}")
    print(f"{len(pairs)} pairs in {cpu:.1f} CPU-s: {len(pairs) / cpu:.0f} pairs per CPU-second (in process); "
          f"right scored 1: {sum(s == 1.0 for s in right)}/{len(right)}")


if __name__ == "__main__":
    main()
