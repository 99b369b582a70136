"""CompletionLog: the completions themselves, kept next to the metrics, for reading and for ``tools/find_aha.py``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from r1lit.callbacks.run_info import EveryNSteps, log_step, run_dir, samples_seen
from r1lit.callbacks.text import clip, scores_line
from r1lit.errors import ConfigError
from r1lit.grpo.groups import COMPLETION_FIELDS

# The keys of one line of the log, in order (tests check them; tools/find_aha.py reads them): where the step is,
# which group and problem, then the completion's own fields (ScoredCompletion's, its text as "completion").
RECORD_KEYS = ("step", "global_step", "samples_seen", "group", "sample", "problem", "prompt", "answer",
               *("completion" if k == "text" else k for k in COMPLETION_FIELDS))


class CompletionLog(L.Callback):
    """After every ``every_n_steps``-th optimizer step, rank 0 appends the completions of its groups
    (all, or ``max_groups`` drawn at random) to ``<run folder>/<filename>``, one JSON object per completion:

    ``step`` (the TensorBoard step), ``global_step`` (optimizer steps done, what ``every_n_steps`` counts), ``samples_seen`` (completions generated over all ranks, this step's included),
    ``group`` (index of the problem in rank 0's batch), ``sample`` (index in its group), ``problem``, ``prompt``
    (the full prompt text; null with ``include_prompt: false``), ``answer`` (gold), ``completion``, ``reward``
    (weighted sum), ``scores`` ({reward name: unweighted score}), ``advantage``, ``length`` (tokens, EOS included),
    ``truncated`` (no EOS within max_tokens).

    Each line is flushed as it is written, so a crash loses nothing; a resumed run appends. With a TensorBoard
    logger the same groups also go to its Text tab (tag ``completions``). Other ranks' groups are not logged.
    """

    def __init__(
        self,
        every_n_steps: int = 1,
        max_groups: int | None = None,
        seed: int = 0,
        filename: str = "completions.jsonl",
        include_prompt: bool = True,
        tensorboard: bool = True,
        tensorboard_max_chars: int | None = 2000,
    ):
        """
        Args:
            every_n_steps: log after optimizer steps n, 2n, … (1-based, as every callback here; 0 = never).
            max_groups: log at most this many of rank 0's groups per step, drawn at random (None = all).
            seed: seed of that draw; the draw at a step depends only on the seed and the step, so a resume repeats it.
            filename: the JSON-lines file in the run folder.
            include_prompt: write each completion's full prompt (the chat template and system prompt included).
            tensorboard: also write the groups as markdown to TensorBoard's Text tab (when a TensorBoard logger is used).
            tensorboard_max_chars: cut each completion in the TensorBoard text after this many characters (None = whole).
        """
        if every_n_steps < 0:
            raise ConfigError(f"CompletionLog.every_n_steps must be >= 0, got {every_n_steps}")
        if max_groups is not None and max_groups < 1:
            raise ConfigError(f"CompletionLog.max_groups must be >= 1 or null (all), got {max_groups}")
        self.every_n_steps, self.max_groups, self.seed = every_n_steps, max_groups, seed
        self.schedule = EveryNSteps(every_n_steps)
        self.filename, self.include_prompt = filename, include_prompt
        self.tensorboard, self.tensorboard_max_chars = tensorboard, tensorboard_max_chars
        self.path: Path | None = None
        self._file = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.path = run_dir(trainer) / self.filename

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not isinstance(outputs, dict) or not self.schedule.due(trainer):
            return
        step = log_step(trainer)
        groups = list(enumerate(outputs.get("groups") or []))
        if self.max_groups is not None and len(groups) > self.max_groups:
            picked = random.Random(self.seed * 1_000_003 + step).sample(range(len(groups)), self.max_groups)
            groups = [groups[i] for i in sorted(picked)]
        if not groups:
            return
        seen = samples_seen(pl_module)
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        for g, group in groups:
            for i, c in enumerate(group.completions):
                record = {
                    "step": step, "global_step": trainer.global_step, "samples_seen": seen, "group": g, "sample": i,
                    "problem": group.problem, "prompt": group.prompt if self.include_prompt else None,
                    "answer": group.answer, **{("completion" if k == "text" else k): getattr(c, k) for k in COMPLETION_FIELDS},
                }
                self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._file.flush()
        if self.tensorboard:
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_text("completions", self._markdown(groups), global_step=step)

    def _markdown(self, groups: list[tuple[int, dict]]) -> str:
        parts = []
        for g, group in groups:
            parts.append(f"### group {g}\n\n**Question:** {group.problem}  \n**Gold answer:** `{group.answer}`\n")
            for i, c in enumerate(group.completions):
                text = clip(c.text, self.tensorboard_max_chars)
                flag = " · truncated" if c.truncated else ""
                parts.append(
                    f"**answer {i}** · {scores_line(c)} · advantage {c.advantage:+.3f} · "
                    f"{c.length} tokens{flag}\n\n```\n{text.replace('```', 'ˋˋˋ')}\n```\n"
                )
        return "\n".join(parts)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
