"""Printing each group the way the seed did: the question, then every answer."""

from __future__ import annotations

import sys

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from r1lit.callbacks.run_info import EveryNSteps
from r1lit.callbacks.text import clip, scores_line
from r1lit.errors import ConfigError


class PrintGroups(L.Callback):
    """After every ``every_n_steps``-th optimizer step, rank 0 prints each group: the original question, the gold answer,
    then each completion with its reward and per-reward scores."""

    def __init__(self, every_n_steps: int = 1, max_groups: int | None = None, max_chars: int | None = 2000):
        """
        Args:
            every_n_steps: print after optimizer steps n, 2n, … (1-based, as every callback here; 0 = never).
            max_groups: print at most this many groups per step (None = all).
            max_chars: cut each completion after this many characters (None = whole).
        """
        if every_n_steps < 0:
            raise ConfigError(f"every_n_steps must be >= 0, got {every_n_steps}")
        self.every_n_steps, self.max_groups, self.max_chars = every_n_steps, max_groups, max_chars
        self.schedule = EveryNSteps(every_n_steps)

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not isinstance(outputs, dict) or not self.schedule.due(trainer):
            return
        groups = outputs.get("groups") or []
        lines = []
        for g, group in enumerate(groups[: self.max_groups]):
            lines.append(f"\n{'=' * 30} step {trainer.global_step} · group {g} {'=' * 30}")
            lines.append(f"Question:\n{group.problem}\nGold answer: {group.answer}")
            for i, completion in enumerate(group.completions):
                lines.append(f"--- answer {i} · {scores_line(completion)} · {completion.length} tokens")
                lines.append(clip(completion.text, self.max_chars))
        if lines:
            print("\n".join(lines), file=sys.stdout, flush=True)
