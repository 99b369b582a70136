"""AhaMonitor: how often completions reflect ("wait", "let me check") or have an "aha", against how often the
untrained model already does, and whether the difference is more than chance.

The seed's claims — reflection appears before "aha", both when reward is about 0.05, after about 300 samples for
0.5B — become numbers: per-step rates next to ``reward``, the base rate measured on the first step's rollout (sampled
before any update), a one-sided Fisher exact test of each window of steps against it, and first sightings that
carry the base rate and the chance of such a sighting by then.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from r1lit.callbacks.run_info import log_step, run_dir, samples_seen
from r1lit.errors import ConfigError
from r1lit.eval.base_rate import binomial_sf, compare_to_base
from r1lit.eval.phrases import AHA_PHRASES, REFLECTION_PHRASES, WAIT_PHRASES, PhraseMatcher, excerpt


class AhaMonitor(L.Callback):
    """Logs, each training step, for each phrase set (``reflection``; ``reflection_strict``, the same without the
    ``weak_phrases``; ``aha``):

    - ``aha/<kind>_rate``: fraction of the step's completions (all ranks) containing a phrase of the set;
    - ``aha/<kind>_rate_correct`` / ``aha/<kind>_rate_incorrect``: the same among correct / incorrect completions
      (left out on a step with no correct / no incorrect completion, rather than logged as 0);
    - ``aha/baseline_<kind>_rate``: the rate of the run's first step, whose rollout is sampled before any update
      (the untrained policy, same prompts, temperature and phrases);

    and every ``window_steps`` steps (the first step excluded), per kind: ``aha/<kind>_window_rate``,
    ``aha/<kind>_p_value`` (one-sided Fisher exact test of the window's rate against the base rate), and
    ``aha/<kind>_accuracy_with`` / ``_accuracy_without`` (accuracy of the completions with / without a phrase of the
    set: does reflecting help?), with one printed line such as "reflection rose from 0.2% to 3.0% (p = 0.004 …)"
    or "… no rise detectable". The windows and the base rate go to ``<run folder>/<rates_filename>``.

    First sightings — the first completion with a phrase of the set (``reflection``, ``aha``, …) and the first such
    completion that was also correct (``reflection_correct``, …) — are recorded with the step, samples seen, the
    step's mean reward, an excerpt, the base rate, and ``chance_by_then``: the probability that the untrained
    model alone produces at least one such completion in that many samples. They are printed once, written to
    ``<run folder>/<filename>`` and kept in checkpoints. Sightings come from rank 0's completions; rates from all
    ranks'.
    """

    def __init__(
        self,
        reflection_phrases: list[str] | None = None,
        aha_phrases: list[str] | None = None,
        weak_phrases: list[str] | None = None,
        accuracy_reward: str = "accuracy",
        correct_threshold: float = 1.0,
        window_steps: int = 10,
        alpha: float = 0.01,
        excerpt_chars: int = 160,
        filename: str = "aha_sightings.json",
        rates_filename: str = "aha_rates.json",
    ):
        """
        Args:
            reflection_phrases: phrases that mark reflection (None = ``r1lit.eval.phrases.REFLECTION_PHRASES``: "wait",
                "but wait", "let me check", "re-evaluate", "this is incorrect", "I made a mistake", …). Matched as
                whole words, any case, any whitespace between words.
            aha_phrases: phrases that mark an aha moment (None = ``r1lit.eval.phrases.AHA_PHRASES``: "aha", "eureka", …).
            weak_phrases: reflection phrases untrained models use in passing, left out of the ``reflection_strict``
                rate (None = ``WAIT_PHRASES``: "wait", "but wait", "hold on", which Oat-Zero leaves out); [] = no
                strict rate.
            accuracy_reward: name of the reward whose score says whether a completion is correct.
            correct_threshold: a completion is correct when that reward's score is at least this.
            window_steps: steps per window of the test against the base rate.
            alpha: a window's rise is reported when its p-value is below this.
            excerpt_chars: characters of context either side of the phrase in a first sighting's excerpt.
            filename: file in the run folder that holds the first sightings (JSON).
            rates_filename: file in the run folder that holds the base rate and each window's test (JSON).
        """
        if excerpt_chars < 0 or window_steps < 1 or not 0 < alpha < 1:
            raise ConfigError(f"AhaMonitor needs excerpt_chars >= 0, window_steps >= 1 and 0 < alpha < 1, got "
                              f"{excerpt_chars}, {window_steps}, {alpha}")
        reflection = list(REFLECTION_PHRASES if reflection_phrases is None else reflection_phrases)
        weak = {" ".join(p.lower().split()) for p in (WAIT_PHRASES if weak_phrases is None else weak_phrases)}
        strict = [p for p in reflection if " ".join(p.lower().split()) not in weak]
        self.matchers = {"reflection": PhraseMatcher(reflection)}
        if weak and strict:
            self.matchers["reflection_strict"] = PhraseMatcher(strict)
        self.matchers["aha"] = PhraseMatcher(AHA_PHRASES if aha_phrases is None else aha_phrases)
        self.accuracy_reward, self.correct_threshold = accuracy_reward, correct_threshold
        self.window_steps, self.alpha = window_steps, alpha
        self.excerpt_chars, self.filename, self.rates_filename = excerpt_chars, filename, rates_filename
        self.sightings: dict[str, dict] = {}
        self.baseline: dict | None = None  # {"step", "n", "correct", kind: {"hits", "hits_correct"}}
        self.windows: list[dict] = []
        self.window = self._empty_window()
        self.path: Path | None = None
        self.rates_path: Path | None = None

    def _empty_window(self) -> dict:
        return {"first_step": None, "n": 0, "correct": 0, **{kind: [0, 0] for kind in self.matchers}}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        names = [reward.name for reward in getattr(pl_module, "rewards", [])]
        if names and self.accuracy_reward not in names:
            raise ConfigError(
                f"AhaMonitor.accuracy_reward={self.accuracy_reward!r} is not one of the model's rewards {names}; "
                "set it to the name of the reward that scores correctness"
            )
        self.path = run_dir(trainer) / self.filename
        self.rates_path = run_dir(trainer) / self.rates_filename

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not isinstance(outputs, dict) or "groups" not in outputs:
            return
        groups = outputs["groups"]
        completions = [(group, c) for group in groups for c in group.completions]
        correct = [c.scores[self.accuracy_reward] >= self.correct_threshold for _, c in completions]
        hits = {kind: [c.text in matcher for _, c in completions] for kind, matcher in self.matchers.items()}

        # [completions, correct, reward sum, then per kind: hits, hits among correct]
        row = [len(completions), sum(correct), sum(c.reward for _, c in completions)]
        for flags in hits.values():
            row += [sum(flags), sum(f and ok for f, ok in zip(flags, correct))]
        counts = torch.tensor(row, dtype=torch.float64, device=pl_module.device)
        if trainer.world_size > 1:
            counts = pl_module.all_gather(counts).sum(dim=0)
        counts = [int(round(v)) if i != 2 else v for i, v in enumerate(counts.tolist())]
        n, n_correct, reward_sum = counts[:3]
        step_hits = {kind: counts[3 + 2 * k: 5 + 2 * k] for k, kind in enumerate(self.matchers)}  # [hits, correct]
        step = log_step(trainer)
        if self.baseline is None and step == 0:  # the first step's rollout is sampled before any update
            self.baseline = {"step": step, "n": n, "correct": n_correct,
                             **{kind: {"hits": h, "hits_correct": hc} for kind, (h, hc) in step_hits.items()}}
            self._write_rates(trainer)

        size = max(len(groups), 1)
        for kind, (total, among_correct) in step_hits.items():
            rates = {f"aha/{kind}_rate": total / max(n, 1)}
            if n_correct > 0:
                rates[f"aha/{kind}_rate_correct"] = among_correct / n_correct
            if n - n_correct > 0:
                rates[f"aha/{kind}_rate_incorrect"] = (total - among_correct) / (n - n_correct)
            if self.baseline is not None:
                rates[f"aha/baseline_{kind}_rate"] = self.baseline[kind]["hits"] / max(self.baseline["n"], 1)
            for name, value in rates.items():
                pl_module.log(name, float(value), on_step=True, on_epoch=False, batch_size=size)

        if self.baseline is not None and step != self.baseline["step"]:
            self._add_to_window(trainer, pl_module, step, n, n_correct, step_hits)
        if trainer.is_global_zero:
            self._record_first_sightings(trainer, pl_module, completions, correct, hits, reward_sum / max(n, 1),
                                         step_hits, n)

    # ---- windows against the base rate ------------------------------------------------------------------------

    def _add_to_window(self, trainer, pl_module, step, n, n_correct, step_hits) -> None:
        window = self.window
        window["first_step"] = step if window["first_step"] is None else window["first_step"]
        window["n"] += n
        window["correct"] += n_correct
        for kind, (h, hc) in step_hits.items():
            window[kind][0] += h
            window[kind][1] += hc
        window["last_step"] = step
        if (step - self.baseline["step"]) % self.window_steps == 0:
            self._close_window(trainer, pl_module, log=True)

    def on_train_end(self, trainer, pl_module) -> None:
        """A run that ends inside a window still reports it (printed and written; Lightning logs no metric here)."""
        if self.baseline is not None and self.window["n"]:
            self._close_window(trainer, pl_module, log=False)

    def _close_window(self, trainer, pl_module, log: bool) -> None:
        window, step = self.window, self.window["last_step"]
        report = {"first_step": window["first_step"], "last_step": step, "samples": window["n"], "kinds": {}}
        for kind in self.matchers:
            hits, hits_correct = window[kind]
            test = compare_to_base(kind, hits, window["n"], self.baseline[kind]["hits"], self.baseline["n"], self.alpha)
            entry = {"rate": test.rate, "hits": hits, "base_rate": test.base_rate, "p_value": test.p_value,
                     "rose": test.rose, "sentence": test.sentence(),
                     "accuracy_with": hits_correct / hits if hits else None,
                     "accuracy_without": (window["correct"] - hits_correct) / (window["n"] - hits)
                     if window["n"] > hits else None}
            report["kinds"][kind] = entry
            logged = {"window_rate": test.rate, "p_value": test.p_value,
                      "accuracy_with": entry["accuracy_with"], "accuracy_without": entry["accuracy_without"]}
            for name, value in logged.items():
                if log and value is not None:
                    pl_module.log(f"aha/{kind}_{name}", float(value), on_step=True, on_epoch=False, batch_size=1)
            rank_zero_info(f"[r1lit] aha, steps {report['first_step']}-{step}: {test.sentence()}")
        self.windows.append(report)
        self.window = self._empty_window()
        self._write_rates(trainer)

    def _write_rates(self, trainer) -> None:
        if trainer.is_global_zero and self.rates_path is not None:
            self.rates_path.parent.mkdir(parents=True, exist_ok=True)
            body = {"baseline": self.baseline, "alpha": self.alpha, "windows": self.windows}
            self.rates_path.write_text(json.dumps(body, indent=2) + "\n")

    # ---- first sightings ---------------------------------------------------------------------------------------

    def _record_first_sightings(self, trainer, pl_module, completions, correct, hits, step_reward: float,
                                step_hits: dict, n: int) -> None:
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
                seen = samples_seen(pl_module)
                self.sightings[key] = {
                    "kind": kind, "phrase": match.phrase, "step": log_step(trainer), "global_step": trainer.global_step,
                    "samples_seen": seen, "reward": step_reward,
                    "completion_reward": completion.reward, "correct": correct[found],
                    "problem": group.problem, "answer": group.answer,
                    "excerpt": excerpt(completion.text, match, self.excerpt_chars),
                    **self._against_base(kind, needs_correct, step_hits, n, seen, log_step(trainer)),
                }
                new.append(key)
        if not new:
            return
        for key in new:
            s = self.sightings[key]
            rank_zero_info(
                f"[r1lit] first {key.replace('_', ' ')} ({s['phrase']!r}) at step {s['step']}, {s['samples_seen']} samples "
                f"seen, step reward {s['reward']:.3f}{sighting_context(s)}: {s['excerpt']}"
            )
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.sightings, indent=2, ensure_ascii=False) + "\n")

    def _against_base(self, kind: str, needs_correct: bool, step_hits: dict, n: int, seen: int | None,
                      step: int) -> dict:
        """A sighting's base rate, the chance of at least one such completion by then at that rate, and the
        step's rate tested against it."""
        if self.baseline is None:
            return {"base_rate": None}
        base_hits = self.baseline[kind]["hits_correct" if needs_correct else "hits"]
        base_rate = base_hits / max(self.baseline["n"], 1)
        step_count = step_hits[kind][1 if needs_correct else 0]
        before = step == self.baseline["step"]
        return {
            "base_rate": base_rate, "base_samples": self.baseline["n"], "before_any_update": before,
            "chance_by_then": binomial_sf(1, seen if seen is not None else n, base_rate),
            "p_value": None if before else compare_to_base(kind, step_count, n, base_hits, self.baseline["n"]).p_value,
        }

    def state_dict(self) -> dict:
        return {"sightings": self.sightings, "baseline": self.baseline, "windows": self.windows, "window": self.window}

    def load_state_dict(self, state_dict: dict) -> None:
        self.sightings = dict(state_dict.get("sightings", {}))
        self.baseline = state_dict.get("baseline")
        self.windows = list(state_dict.get("windows", []))
        window = state_dict.get("window")
        self.window = window if window is not None and set(window) >= set(self.matchers) else self._empty_window()


def sighting_context(s: dict) -> str:
    """ "(base rate 0.4% of 256 before training; chance of one by then 99%)" for a printed sighting."""
    if s.get("base_rate") is None:
        return ""
    if s.get("before_any_update"):
        return f" (before any update: the untrained model's own; base rate {s['base_rate']:.1%} of {s['base_samples']})"
    return (f" (base rate {s['base_rate']:.1%} of {s['base_samples']} before training; chance of one by then "
            f"{s['chance_by_then']:.0%}; this step vs base p = {s['p_value']:.2g})")
