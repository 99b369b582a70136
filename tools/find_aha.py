"""List reflection and "aha" examples from a run's completion log, each phrase highlighted in its context.

    .venv/bin/python tools/find_aha.py runs/smollm2-cpu/version_0 [--kind aha|reflection|both] [--correct-only]
        [--limit 20] [--context 200]

The argument is the run folder (its ``completions.jsonl``, written by the ``CompletionLog`` callback) or the jsonl
file itself. Phrases are those of ``AhaMonitor`` (``r1lit.eval.phrases``): whole words, any case. Examples come in the
order they were logged, so the first one printed for a kind is its earliest logged sighting.

Each example shows the base rate (the untrained policy's: ``AhaMonitor``'s ``aha_rates.json`` in the run folder,
else the log's first step, sampled before any update) and the chance that the untrained model alone gives at
least one such completion in the samples seen by then; the summary tests the logged rate after the first step
against the base rate (one-sided Fisher exact test).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from r1lit.eval.base_rate import binomial_sf, compare_to_base
from r1lit.eval.phrases import AHA_PHRASES, REFLECTION_PHRASES, WAIT_PHRASES, PhraseMatcher, excerpt

MATCHERS = {
    "reflection": PhraseMatcher(REFLECTION_PHRASES),
    "reflection_strict": PhraseMatcher([p for p in REFLECTION_PHRASES if p not in WAIT_PHRASES]),
    "aha": PhraseMatcher(AHA_PHRASES),
}


def read_log(path: Path) -> list[dict]:
    """The records of a completion log; a last line cut by a crash is skipped."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def find_examples(records: list[dict], kinds: list[str], correct_only: bool, accuracy_reward: str = "accuracy",
                  threshold: float = 1.0) -> list[tuple[str, dict, object]]:
    """(kind, record, first match) for each record holding a phrase of one of ``kinds``, in log order."""
    matchers = MATCHERS
    found = []
    for record in records:
        correct = record.get("scores", {}).get(accuracy_reward, 0.0) >= threshold
        if correct_only and not correct:
            continue
        for kind in kinds:
            match = matchers[kind].first(record["completion"])
            if match is not None:
                found.append((kind, record, match))
    return found


def base_rates(run: Path, records: list[dict], kinds: list[str]) -> tuple[dict[str, tuple[int, int]], str]:
    """(hits, samples) per kind before any update, and where they come from: the monitor's ``aha_rates.json``
    when the run folder has one, else the log's first step."""
    saved = run / "aha_rates.json"
    if saved.is_file():
        baseline = json.loads(saved.read_text()).get("baseline")
        if baseline and all(kind in baseline for kind in kinds):
            return {kind: (baseline[kind]["hits"], baseline["n"]) for kind in kinds}, f"AhaMonitor, step {baseline['step']}"
    if not records:
        return {}, "none"
    first = min(r["step"] for r in records)
    rows = [r for r in records if r["step"] == first]
    return ({kind: (sum(r["completion"] in MATCHERS[kind] for r in rows), len(rows)) for kind in kinds},
            f"the log's step {first}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="run folder or completions.jsonl")
    parser.add_argument("--kind", choices=["aha", "reflection", "reflection_strict", "both"], default="both",
                        help="reflection_strict: reflection without wait-type words")
    parser.add_argument("--correct-only", action="store_true", help="only completions the accuracy reward scored correct")
    parser.add_argument("--limit", type=int, default=20, help="print at most this many examples (0 = all)")
    parser.add_argument("--context", type=int, default=200, help="characters shown either side of the phrase")
    parser.add_argument("--accuracy-reward", default="accuracy", help="name of the reward that scores correctness")
    parser.add_argument("--threshold", type=float, default=1.0, help="correct = that reward's score >= this")
    args = parser.parse_args(argv)
    path = args.log / "completions.jsonl" if args.log.is_dir() else args.log
    if not path.is_file():
        parser.error(f"no completion log at {path}; add the CompletionLog callback to the run's trainer.callbacks")
    records = read_log(path)
    kinds = ["reflection", "aha"] if args.kind == "both" else [args.kind]
    found = find_examples(records, kinds, args.correct_only, args.accuracy_reward, args.threshold)
    base, origin = base_rates(path.parent, records, kinds)
    mark = ("\033[1;33m", "\033[0m") if sys.stdout.isatty() else (">>>", "<<<")
    shown = found if args.limit <= 0 else found[: args.limit]
    for kind, record, match in shown:
        scores = ", ".join(f"{k}={v:g}" for k, v in record.get("scores", {}).items())
        print(f"[{kind} · {match.phrase!r}] step {record['step']} · {record.get('samples_seen')} samples seen · "
              f"reward {record['reward']:.3f} ({scores})")
        print(f"  Q: {' '.join(str(record['problem']).split())}   gold: {record['answer']}")
        if kind in base:
            hits, n = base[kind]
            seen = record.get("samples_seen")
            chance = f"; chance of one by then {binomial_sf(1, seen, hits / n):.0%}" if seen and n else ""
            print(f"  base rate {hits}/{n} = {hits / max(n, 1):.1%} ({origin}){chance}")
        print(f"  {excerpt(record['completion'], match, args.context, mark)}\n")
    counts = {kind: sum(1 for k, _, _ in found if k == kind) for kind in kinds}
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    print(f"{len(found)} match(es) in {len(records)} logged completions ({summary}); {len(shown)} shown")
    first = min((r["step"] for r in records), default=0)
    after = [r for r in records if r["step"] > first]
    for kind in kinds:
        if kind in base and after and base[kind][1]:
            hits = sum(r["completion"] in MATCHERS[kind] for r in after)
            print(f"after step {first}: {compare_to_base(kind, hits, len(after), *base[kind]).sentence()}")
    return len(found)


if __name__ == "__main__":
    main(sys.argv[1:])
