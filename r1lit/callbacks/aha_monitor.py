"""AhaMonitor: how often completions reflect ("wait", "let me check") or have an "aha", and when that first happened.

The seed's claims — reflection appears before "aha", both when reward is about 0.05, after about 300 samples for
0.5B — become numbers: per-step rates logged next to ``reward`` and first sightings kept in the run folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from r1lit.callbacks.run_info import log_step, run_dir, samples_seen
from r1lit.errors import ConfigError
from r1lit.eval.phrases import AHA_PHRASES, REFLECTION_PHRASES, PhraseMatcher, excerpt


class AhaMonitor(L.Callback):
    """Logs, each training step, for each phrase set (``reflection``, ``aha``):

    - ``aha/<kind>_rate``: fraction of the step's completions (all ranks) containing a phrase of the set;
    - ``aha/<kind>_rate_correct`` / ``aha/<kind>_rate_incorrect``: the same among correct / incorrect completions
      (left out on a step with no correct / no incorrect completion, rather than logged as 0);

    and records first sightings — the first completion with a phrase of the set (``reflection``, ``aha``) and the
    first such completion that was also correct (``reflection_correct``, ``aha_correct``) — with the step, samples
    seen, the step's mean reward and an excerpt. They are printed once, written to ``<run folder>/<filename>`` and
    kept in checkpoints. Sightings come from rank 0's completions; rates from all ranks'.
    """

    def __init__(
        self,
        reflection_phrases: list[str] | None = None,
        aha_phrases: list[str] | None = None,
        accuracy_reward: str = "accuracy",
        correct_threshold: float = 1.0,
        excerpt_chars: int = 160,
        filename: str = "aha_sightings.json",
    ):
        """
        Args:
            reflection_phrases: phrases that mark reflection (None = ``r1lit.eval.phrases.REFLECTION_PHRASES``: "wait",
                "but wait", "let me check", "re-evaluate", "this is incorrect", "I made a mistake", …). Matched as
                whole words, any case, any whitespace between words.
            aha_phrases: phrases that mark an aha moment (None = ``r1lit.eval.phrases.AHA_PHRASES``: "aha", "eureka", …).
            accuracy_reward: name of the reward whose score says whether a completion is correct.
            correct_threshold: a completion is correct when that reward's score is at least this.
            excerpt_chars: characters of context either side of the phrase in a first sighting's excerpt.
            filename: file in the run folder that holds the first sightings (JSON).
        """
        if excerpt_chars < 0:
            raise ConfigError(f"AhaMonitor.excerpt_chars must be >= 0, got {excerpt_chars}")
        self.matchers = {
            "reflection": PhraseMatcher(REFLECTION_PHRASES if reflection_phrases is None else reflection_phrases),
            "aha": PhraseMatcher(AHA_PHRASES if aha_phrases is None else aha_phrases),
        }
        self.accuracy_reward, self.correct_threshold = accuracy_reward, correct_threshold
        self.excerpt_chars, self.filename = excerpt_chars, filename
        self.sightings: dict[str, dict] = {}
        self.path: Path | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        names = [reward.name for reward in getattr(pl_module, "rewards", [])]
        if names and self.accuracy_reward not in names:
            raise ConfigError(
                f"AhaMonitor.accuracy_reward={self.accuracy_reward!r} is not one of the model's rewards {names}; "
                "set it to the name of the reward that scores correctness"
            )
        self.path = run_dir(trainer) / self.filename

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not isinstance(outputs, dict) or "groups" not in outputs:
            return
        groups = outputs["groups"]
        completions = [(group, c) for group in groups for c in group.completions]
        correct = [c.scores[self.accuracy_reward] >= self.correct_threshold for _, c in completions]
        hits = {kind: [c.text in matcher for _, c in completions] for kind, matcher in self.matchers.items()}

        # [completions, correct, reward sum, then per kind: hits, hits among correct, hits among incorrect]
        row = [len(completions), sum(correct), sum(c.reward for _, c in completions)]
        for flags in hits.values():
            with_correct = sum(f and ok for f, ok in zip(flags, correct))
            row += [sum(flags), with_correct, sum(flags) - with_correct]
        counts = torch.tensor(row, dtype=torch.float64, device=pl_module.device)
        if trainer.world_size > 1:
            counts = pl_module.all_gather(counts).sum(dim=0)
        counts = counts.tolist()
        n, n_correct, reward_sum = counts[:3]
        for k, kind in enumerate(self.matchers):
            total, among_correct, among_incorrect = counts[3 + 3 * k: 6 + 3 * k]
            rates = {f"aha/{kind}_rate": total / max(n, 1)}
            if n_correct > 0:
                rates[f"aha/{kind}_rate_correct"] = among_correct / n_correct
            if n - n_correct > 0:
                rates[f"aha/{kind}_rate_incorrect"] = among_incorrect / (n - n_correct)
            for name, value in rates.items():
                pl_module.log(name, float(value), on_step=True, on_epoch=False, batch_size=max(len(groups), 1))

        if trainer.is_global_zero:
            self._record_first_sightings(trainer, pl_module, completions, correct, hits, reward_sum / max(n, 1))

    def _record_first_sightings(self, trainer, pl_module, completions, correct, hits, step_reward: float) -> None:
        new = []
        for kind, flags in hits.items():
            for key, needs_correct in ((kind, False), (f"{kind}_correct", True)):
                if key in self.sightings:
                    continue
                found = next((i for i, (f, ok) in enumerate(zip(flags, correct)) if f and (ok or not needs_correct)), None)
                if found is None:
                    continue
                group, completion = completions[found]
                match = self.matchers[kind].first(completion.text)
                self.sightings[key] = {
                    "kind": kind, "phrase": match.phrase, "step": log_step(trainer), "global_step": trainer.global_step,
                    "samples_seen": samples_seen(pl_module), "reward": step_reward,
                    "completion_reward": completion.reward, "correct": correct[found],
                    "problem": group.problem, "answer": group.answer,
                    "excerpt": excerpt(completion.text, match, self.excerpt_chars),
                }
                new.append(key)
        if not new:
            return
        for key in new:
            s = self.sightings[key]
            rank_zero_info(
                f"[r1lit] first {key.replace('_', ' ')} ({s['phrase']!r}) at step {s['step']}, {s['samples_seen']} samples "
                f"seen, step reward {s['reward']:.3f}: {s['excerpt']}"
            )
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.sightings, indent=2, ensure_ascii=False) + "\n")

    def state_dict(self) -> dict:
        return {"sightings": self.sightings}

    def load_state_dict(self, state_dict: dict) -> None:
        self.sightings = dict(state_dict.get("sightings", {}))
