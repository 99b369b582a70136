"""TrainingHealth on hand-made steps: what it reads of the logged metrics and groups, what it writes, and how a
rule named in stop_on ends the run."""

import json
from types import SimpleNamespace

import pytest
import torch

from r1lit.callbacks import TrainingHealth
from r1lit.callbacks.health import engine_log
from r1lit.errors import ConfigError, EngineError, TrainingError
from r1lit.eval.health_rules import HealthThresholds
from r1lit.grpo.groups import ScoredCompletion, ScoredGroup
from r1lit.rewards import AccuracyReward, FormatReward


def _group(*accuracies):
    return ScoredGroup(problem="p", answer="1", prompt="p", completions=[
        ScoredCompletion(text="t", reward=a, scores={"accuracy": a, "format": 0.0}, advantage=0.0, length=4,
                         truncated=True) for a in accuracies])


class _Module(SimpleNamespace):
    def log(self, name, value, **kwargs):
        self.logged.setdefault(name, []).append(value)


def _stubs(tmp_path, **engine):
    trainer = SimpleNamespace(world_size=1, is_global_zero=True, global_step=0, max_steps=100, callback_metrics={},
                              log_dir=str(tmp_path), default_root_dir=str(tmp_path),
                              fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=0)))
    module = _Module(rewards=[AccuracyReward(), FormatReward()], device="cpu", logged={},
                     engine=SimpleNamespace(**engine))
    return trainer, module


def _step(callback, trainer, module, step, groups, **metrics):
    trainer.fit_loop.epoch_loop._batches_that_stepped = step
    trainer.global_step = step + 1
    trainer.callback_metrics = {k: torch.tensor(v) for k, v in metrics.items()}
    callback.on_train_batch_end(trainer, module, {"groups": groups}, None, step)


def test_reads_metrics_and_groups_and_writes_findings(tmp_path):
    trainer, module = _stubs(tmp_path)
    callback = TrainingHealth(HealthThresholds(window=2))
    callback.setup(trainer, module, "fit")
    groups = [_group(0.0, 0.0), _group(1.0, 1.0), _group(0.0, 1.0)]  # all wrong, all right, mixed
    trainer.callback_metrics = {"completions/clipped_ratio": torch.tensor(1.0), "frac_reward_zero_std": torch.tensor(2 / 3),
                                "rewards/accuracy/mean": torch.tensor(0.5), "lr": torch.tensor(1e-6)}
    signals = callback.signals(trainer, module, groups)
    assert signals.truncated == 1.0 and signals.flat == pytest.approx(2 / 3) and signals.accuracy == 0.5
    assert signals.all_wrong == pytest.approx(1 / 3) and signals.all_right == pytest.approx(1 / 3)
    assert signals.reward_spread == 1.0 and signals.steps_left == 100 and signals.logp_gap is None

    for step in range(2):
        _step(callback, trainer, module, step, groups, **{"completions/clipped_ratio": 1.0})
    assert module.logged["health/truncated"] == [0.0, 1.0] and module.logged["health/frozen_engine"] == [0.0, 0.0]
    saved = json.loads((tmp_path / "health.json").read_text())
    assert [f["rule"] for f in saved] == ["truncated", "no_eos"] and saved[0]["step"] == 1 and not saved[0]["stopped"]


def test_a_rule_in_stop_on_ends_the_run_with_its_fix(tmp_path):
    trainer, module = _stubs(tmp_path)
    callback = TrainingHealth(HealthThresholds(window=2), stop_on=("truncated",))
    callback.setup(trainer, module, "fit")
    _step(callback, trainer, module, 0, [_group(0.0, 1.0)], **{"completions/clipped_ratio": 0.9})
    with pytest.raises(TrainingError, match="raise model.sampling.max_tokens .*stop_on names truncated"):
        _step(callback, trainer, module, 1, [_group(0.0, 1.0)], **{"completions/clipped_ratio": 0.9})
    assert json.loads((tmp_path / "health.json").read_text())[0]["stopped"] is True


def test_a_frozen_engine_stops_with_the_engine_log(tmp_path):
    trainer, module = _stubs(tmp_path, failure_hint=lambda: "\n  The engine process logs to x.log; it ends:\nOOM")
    callback = TrainingHealth(HealthThresholds(frozen_steps=2))
    callback.setup(trainer, module, "fit")
    _step(callback, trainer, module, 0, [_group(0.0, 1.0)], **{"sampling/logp_diff/mean": 1e-5})
    _step(callback, trainer, module, 1, [_group(0.0, 1.0)], **{"sampling/logp_diff/mean": 0.01})
    with pytest.raises(EngineError, match=r"(?s)not serving the pushed weights.*it ends:\nOOM"):
        _step(callback, trainer, module, 2, [_group(0.0, 1.0)], **{"sampling/logp_diff/mean": 0.02})


def test_engine_log_prefers_the_excerpt_and_survives_a_failing_one():
    assert engine_log(SimpleNamespace(log_excerpt=lambda: "last lines")) == "\nlast lines"
    assert engine_log(SimpleNamespace()) == "" and engine_log(None) == ""

    def broken():
        raise OSError("gone")

    assert "could not be read: gone" in engine_log(SimpleNamespace(log_excerpt=broken))


def test_unknown_rule_in_stop_on_names_the_rules():
    with pytest.raises(ConfigError, match=r"no rule named \['trunc'\].*'truncated'"):
        TrainingHealth(stop_on=("trunc",))
