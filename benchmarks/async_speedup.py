"""What one-step-off generation (``model.async_generation``) would gain in the reserved topology: a timing model
fed with measured step parts. A prediction, not a measurement: no GPU pair has run it here.

    .venv/bin/python benchmarks/async_speedup.py runs/smollm2-cpu/version_0      # a synchronous run's medians
    .venv/bin/python benchmarks/async_speedup.py --generate 9.3 --optimise 11.0 --score 0.2 --push 0.4

The model. Synchronous GRPO does, per step: generate (g), score (s), optimise (t), push the weights (p), one after
the other, so a step is g + s + t + p. One-step-off asks for step k + 1's rollout when step k starts, scores and
trains step k meanwhile, and its push waits until that generation is done: a step is max(g, s + t) + p. The speedup
is (g + s + t + p) / (max(g, s + t) + p); the side that waits idles for |g − (s + t)| per step. It assumes that the
generating GPU and the training GPUs do not slow each other (true for separate GPUs; not on a 2-core CPU, where both
share the cores) and that g and t do not change with staleness.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

PARTS = {"generate": "time/generate", "score": "time/score", "optimise": "time/optimise", "push": "time/weight_push"}


@dataclass
class StepParts:
    """Seconds per step of each part of a synchronous GRPO step."""

    generate: float
    score: float
    optimise: float
    push: float = 0.0

    def synchronous(self) -> float:
        return self.generate + self.score + self.optimise + self.push

    def one_step_off(self) -> float:
        return max(self.generate, self.score + self.optimise) + self.push

    def speedup(self) -> float:
        return self.synchronous() / self.one_step_off()


def medians_from_run(run: Path) -> StepParts:
    """Median of each part over a run's steps, skipping the first (start-up); a push not logged counts as 0."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    missing = [tag for name, tag in PARTS.items() if name != "push" and tag not in tags]
    if missing:
        raise SystemExit(f"{run} has no {', '.join(missing)}: give a TensorBoard folder of an r1lit fit")

    def median(tag: str) -> float:
        values = [e.value for e in acc.Scalars(tag)] if tag in tags else [0.0]
        return statistics.median(values[1:] or values)

    return StepParts(**{name: median(tag) for name, tag in PARTS.items()})


def report(parts: StepParts) -> str:
    sync, off = parts.synchronous(), parts.one_step_off()
    train = parts.score + parts.optimise
    idle = "generation engine" if train > parts.generate else "training ranks"
    return (f"parts (s): generate {parts.generate:.2f}, score {parts.score:.2f}, optimise {parts.optimise:.2f}, "
            f"push {parts.push:.2f}\n"
            f"synchronous step {sync:.2f} s; one-step-off step {off:.2f} s (predicted); speedup x{parts.speedup():.2f}\n"
            f"one-step-off still idles the {idle} {abs(train - parts.generate):.2f} s per step")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", nargs="?", type=Path, help="TensorBoard folder of a synchronous r1lit run")
    for name in PARTS:
        parser.add_argument(f"--{name}", type=float, help=f"seconds of {name} per step (instead of a run)")
    args = parser.parse_args(argv)
    if args.run is not None:
        parts = medians_from_run(args.run)
    elif args.generate is not None and args.optimise is not None:
        parts = StepParts(args.generate, args.score or 0.0, args.optimise, args.push or 0.0)
    else:
        parser.error("give a run folder, or --generate and --optimise (and --score, --push)")
    print(report(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
