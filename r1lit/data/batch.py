"""ProblemBatch: what the data hands a training step: B problems, their gold answers, prompts and prompt ids."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ProblemBatch:
    """B problems, field by field (each list has B entries, in the same order)."""

    problems: list[str]
    """The problem statements."""
    answers: list[str]
    """The gold answers."""
    prompts: list[str]
    """The rendered prompt texts (chat template and system prompt included)."""
    prompt_ids: list[list[int]]
    """The prompts' token ids."""
    next: ProblemBatch | None = field(default=None, repr=False)
    """The batch that follows this one in the epoch, with one-step-off generation (the engine starts on it while
    this one trains); None otherwise, and for the epoch's last batch."""

    def __len__(self) -> int:
        return len(self.problems)

    @classmethod
    def collate(cls, examples: list[dict]) -> ProblemBatch:
        """A DataLoader's ``collate_fn``: examples with keys problem, answer, prompt, prompt_ids."""
        return cls([e["problem"] for e in examples], [e["answer"] for e in examples],
                   [e["prompt"] for e in examples], [e["prompt_ids"] for e in examples])

    def take(self, indices: list[int]) -> ProblemBatch:
        """The given problems, in the given order (without a successor)."""
        return ProblemBatch([self.problems[i] for i in indices], [self.answers[i] for i in indices],
                            [self.prompts[i] for i in indices], [self.prompt_ids[i] for i in indices])

    @classmethod
    def concat(cls, parts: list[ProblemBatch]) -> ProblemBatch:
        """Batches one after the other (without a successor)."""
        return cls([p for b in parts for p in b.problems], [a for b in parts for a in b.answers],
                   [p for b in parts for p in b.prompts], [i for b in parts for i in b.prompt_ids])
