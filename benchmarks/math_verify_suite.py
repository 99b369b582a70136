"""How often r1lit's AccuracyReward agrees with the verdicts of Math-Verify's own published test suite.

    git clone https://github.com/huggingface/Math-Verify /tmp/Math-Verify      # or any copy of its tests/ folder
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/math_verify_suite.py /tmp/Math-Verify/tests [--json out.json]

Every ``pytest.mark.parametrize`` table of the suite whose first three columns are gold, prediction and expected
verdict is read with ``ast`` (nothing of the suite is imported or run). Each case is scored twice: the prediction
wrapped in ``<answer>…</answer>`` ("tagged") and as a bare completion ("bare"); the gold goes in as the gold.
Prints the agreement and every false positive (r1lit pays, the suite says unequal); ``--json`` writes each case's
verdicts, so two versions of r1lit can be compared case by case (``--compare before.json``).
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path


def cases(tests: Path) -> list[dict]:
    """(file, gold, prediction, expected) of every gold/prediction/verdict table in the suite's test files."""
    found = []
    for path in sorted(tests.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "parametrize"):
                continue
            names = [n.strip() for n in ast.literal_eval(node.args[0]).split(",")]
            if names[:2] != ["gold", "pred"] or names[2] not in ("expected", "result"):
                continue
            for row in node.args[1].elts:
                try:
                    gold, pred, expected = (ast.literal_eval(e) for e in row.elts[:3])
                except ValueError:  # a row built by code (an f-string): not a literal case
                    continue
                found.append({"file": path.name, "gold": gold, "pred": pred, "expected": int(bool(expected))})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tests", type=Path, help="Math-Verify's tests/ folder")
    parser.add_argument("--json", type=Path, help="write each case's verdicts here")
    parser.add_argument("--compare", type=Path, help="a --json file of another run: list the cases that changed")
    args = parser.parse_args()

    import r1lit
    from r1lit.rewards.accuracy import AccuracyReward

    table = cases(args.tests)
    reward = AccuracyReward(num_workers=2, item_timeout=8.0, batch_timeout=600.0)
    try:
        golds = [c["gold"] for c in table]
        tagged = reward(["q"] * len(table), [f"<answer>{c['pred']}</answer>" for c in table], golds)
        bare = reward(["q"] * len(table), [c["pred"] for c in table], golds)
    finally:
        reward.close()
    for case, t, b in zip(table, tagged, bare):
        case["tagged"], case["bare"] = int(t), int(b)

    print(f"r1lit from {r1lit.__file__}; {len(table)} cases from {args.tests}")
    for mode in ("tagged", "bare"):
        agree = sum(c[mode] == c["expected"] for c in table)
        false_pos = [c for c in table if c[mode] == 1 and c["expected"] == 0]
        print(f"{mode}: agrees with {agree}/{len(table)}; false positives {len(false_pos)}")
        for c in false_pos:
            print(f"  FP {c['file']}: gold {c['gold']!r} pred {c['pred']!r}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))
    if args.compare:
        other = {(c["gold"], c["pred"]): c for c in json.loads(args.compare.read_text())}
        for c in table:
            o = other.get((c["gold"], c["pred"]))
            for mode in ("tagged", "bare"):
                if o is not None and o[mode] != c[mode]:
                    print(f"changed {mode} {o[mode]}->{c[mode]} (expected {c['expected']}): "
                          f"gold {c['gold']!r} pred {c['pred']!r}")


if __name__ == "__main__":
    main()
