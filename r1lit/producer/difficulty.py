"""An online difficulty filter: skip problems the current policy always or never solves.

Every problem a step generated for is remembered with whether its group's rewards were all equal (always solved
or never solved: no learning signal) and the step it was seen at. When it comes up again within ``max_age``
steps of a flat result, it is skipped before generation, which saves its G completions; after ``max_age`` steps
it is tried again (the policy has moved). A problem whose group had a spread is never skipped.

It works through dynamic sampling, which it requires: skipped problems leave the round, and dynamic sampling draws
replacements until the batch is full (and still drops the groups that come out flat). Each round keeps at least
one problem, so engines whose ``generate`` is a collective across ranks are always called. The memory is the same
on every rank (ranks share what they saw after each step) and is kept in checkpoints, so resumes are exact.
"""

from __future__ import annotations

from r1lit.errors import ConfigError


class DifficultyFilter:
    """Skips problems whose last group, at most ``max_age`` steps ago, had zero reward spread."""

    def __init__(self, max_age: int = 50):
        """
        Args:
            max_age: steps during which a flat result keeps its problem out; after that it is tried again.
        """
        if max_age < 1:
            raise ConfigError(f"difficulty_filter.max_age must be >= 1, got {max_age}")
        self.max_age = max_age
        self.seen: dict[str, tuple[int, bool]] = {}  # problem -> (step last seen, its group was flat)

    def skips(self, problems: list[str], step: int) -> list[bool]:
        """Which problems to leave out at ``step``; never all of them (the first is kept then)."""
        out = []
        for problem in problems:
            last = self.seen.get(problem)
            out.append(last is not None and last[1] and step - last[0] <= self.max_age)
        if out and all(out):
            out[0] = False
        return out

    def update(self, problems: list[str], flat: list[bool], step: int) -> None:
        for problem, was_flat in zip(problems, flat):
            self.seen[problem] = (step, bool(was_flat))

    def state_dict(self) -> dict:
        return {"seen": {p: list(v) for p, v in self.seen.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.seen = {p: (int(v[0]), bool(v[1])) for p, v in state.get("seen", {}).items()}
