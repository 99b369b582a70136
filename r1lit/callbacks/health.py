"""TrainingHealth: says, in one line, when a run stops learning and which setting fixes it.

The ``r1lit`` command adds it to every fit (a config that lists it keeps its own settings). Quiet while all is
well; the rules are in ``r1lit.eval.health_rules``.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from r1lit.callbacks.run_info import log_step, run_dir
from r1lit.errors import ConfigError, EngineError, TrainingError
from r1lit.eval.health_rules import RULES, Finding, HealthMonitor, HealthThresholds, RuleName, StepSignals
from r1lit.rewards.accuracy import AccuracyReward
from r1lit.rewards.format import FormatReward


class TrainingHealth(L.Callback):
    """After each training step, feeds the step's numbers to the health rules. A rule that starts to hold prints
    one line (cause and fix), is written to ``<run folder>/<filename>``, and, when named in ``stop_on``, ends the
    run with that line as its error. ``health/<rule>`` is logged every step: 1 while the rule holds, else 0.

    It reads the logged metrics (synchronised over ranks, so every rank decides alike) and the step's groups
    (all-wrong / all-right groups and the batch's reward spread, gathered over ranks).
    """

    def __init__(
        self,
        thresholds: HealthThresholds = HealthThresholds(),
        stop_on: tuple[RuleName, ...] = ("frozen_engine",),
        correct_threshold: float = 1.0,
        filename: str = "health.json",
    ):
        """
        Args:
            thresholds: when each rule holds (window length and bounds).
            stop_on: rules that end the run with an error instead of only reporting (any of truncated, no_eos,
                flat_groups, template_copying, entropy_collapse, length_collapse, frozen_engine, lr_zero,
                constant_rewards). A frozen engine makes the run train on samples of weights it has left behind:
                stopped by default.
            correct_threshold: a completion is correct when the first ``AccuracyReward``'s score is at least this.
            filename: file in the run folder that lists every finding (JSON).
        """
        unknown = sorted(set(stop_on) - {rule.name for rule in RULES})
        if unknown:
            raise ConfigError(f"TrainingHealth.stop_on: no rule named {unknown}; the rules are "
                              f"{[rule.name for rule in RULES]}")
        self.thresholds, self.stop_on = thresholds, tuple(stop_on)
        self.correct_threshold, self.filename = correct_threshold, filename
        self.monitor = HealthMonitor(thresholds)
        self.findings: list[dict] = []
        self.path: Path | None = None
        self.accuracy_name = self.format_name = None
        self.total_steps: int | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        rewards = getattr(pl_module, "rewards", [])
        self.accuracy_name = next((r.name for r in rewards if isinstance(r, AccuracyReward)), None)
        self.format_name = next((r.name for r in rewards if isinstance(r, FormatReward)), None)
        self.path = run_dir(trainer) / self.filename
        self.monitor = HealthMonitor(self.thresholds)  # a new fit starts a new history

    def on_train_start(self, trainer, pl_module) -> None:
        batches = trainer.estimated_stepping_batches  # a run bounded by max_epochs: its optimizer steps
        self.total_steps = None if batches == float("inf") else int(batches) * getattr(pl_module, "num_iterations", 1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not isinstance(outputs, dict) or "groups" not in outputs:
            return
        signals = self.signals(trainer, pl_module, outputs["groups"])
        findings, states = self.monitor.observe(signals)
        for name, holds in states.items():
            pl_module.log(f"health/{name}", float(holds), on_step=True, on_epoch=False, batch_size=1)
        for finding in findings:
            self.report(trainer, pl_module, finding)

    def signals(self, trainer, pl_module, groups) -> StepSignals:
        """The step's numbers: logged metrics, plus counts over the groups of every rank."""
        metrics = trainer.callback_metrics

        def metric(name: str) -> float | None:
            value = metrics.get(name)
            return None if value is None else float(value)

        # [groups, all wrong, all right, -min reward, max reward] on this rank
        wrong = right = 0
        low, high = float("inf"), float("-inf")
        for group in groups:
            rewards = [c.reward for c in group.completions]
            low, high = min(low, *rewards), max(high, *rewards)
            if self.accuracy_name is not None:
                correct = [c.scores[self.accuracy_name] >= self.correct_threshold for c in group.completions]
                wrong, right = wrong + (not any(correct)), right + all(correct)
        counts = torch.tensor([len(groups), wrong, right, -low, high], dtype=torch.float64, device=pl_module.device)
        if trainer.world_size > 1:
            gathered = pl_module.all_gather(counts)  # [world, 5]
            counts = torch.cat([gathered[:, :3].sum(dim=0), gathered[:, 3:].max(dim=0).values])
        n, wrong, right, neg_low, high = counts.tolist()
        has_accuracy = self.accuracy_name is not None and n > 0
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else self.total_steps
        return StepSignals(
            step=log_step(trainer),
            truncated=metric("completions/clipped_ratio"),
            flat=metric("frac_reward_zero_std"),
            all_wrong=wrong / n if has_accuracy else None,
            all_right=right / n if has_accuracy else None,
            accuracy=metric(f"rewards/{self.accuracy_name}/mean") if self.accuracy_name else None,
            format=metric(f"rewards/{self.format_name}/mean") if self.format_name else None,
            entropy=metric("entropy"),
            length=metric("completions/mean_length"),
            logp_gap=metric("sampling/logp_diff/mean"),
            staleness=int(metric("rollout/staleness") or 0),
            lr=metric("lr"),
            steps_left=total - trainer.global_step if total is not None else None,
            reward_spread=high + neg_low if n > 0 else None,
        )

    def report(self, trainer, pl_module, finding: Finding) -> None:
        stops = finding.rule in self.stop_on
        line = f"[r1lit] health: {finding.rule} at step {finding.step}: {finding.message}"
        rank_zero_info(line)
        self.findings.append({"rule": finding.rule, "step": finding.step, "global_step": trainer.global_step,
                              "message": finding.message, "stopped": stops})
        if trainer.is_global_zero and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.findings, indent=2, ensure_ascii=False) + "\n")
        if stops:
            if finding.rule == "frozen_engine":
                raise EngineError(finding.message + engine_log(getattr(pl_module, "engine", None)))
            raise TrainingError(f"{finding.message} (TrainingHealth.stop_on names {finding.rule})")

    def state_dict(self) -> dict:
        return {"findings": self.findings}

    def load_state_dict(self, state_dict: dict) -> None:
        self.findings = list(state_dict.get("findings", []))


def engine_log(engine) -> str:
    """The end of the engine's own log, where it has one (a ``log_excerpt()``, or its failure hint)."""
    for name in ("log_excerpt", "failure_hint"):
        method = getattr(engine, name, None)
        if callable(method):
            try:
                text = method()
            except Exception as error:  # the log is a courtesy; the error above is the message
                text = f" (its log could not be read: {error})"
            if text and text.strip():
                return text if text.startswith("\n") else "\n" + text
    return ""
