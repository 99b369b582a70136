"""Faults inside one process: NaN updates, failing rewards, dying and degenerate engines, atomic checkpoint
writes, signal handling, and the parse-time checks that name the fix. The same faults against a real ``r1lit fit``
subprocess are in test_faults_cli.py."""

import math
import os
import signal
import subprocess
import sys
import textwrap

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from custom_rewards import BrokenReward, FlakyReward, LengthReward
from fault_helpers import DegenerateEngine, DyingEngine, NaNLoss
from r1lit.callbacks import GracefulStop
from r1lit.training.checkpoints import AtomicCheckpointIO
from r1lit.cli.command import main
from r1lit.data import ArithmeticSource, MathDataModule
from r1lit.errors import ConfigError, EngineError, RewardError, TrainingError
from r1lit.grpo.losses import GRPOLoss
from r1lit.module import GRPOModule
from r1lit.training.nonfinite import NonFiniteGuard, finite_update
from r1lit.rewards import FormatReward
from r1lit.rewards.scoring import score_completions
from r1lit.rollout import SamplingConfig
from helpers import tiny_config, write_config
from helpers import adamw


class Record(L.Callback):
    """Parameters before and after each batch, the metrics each batch logged, and the module's outputs."""

    def __init__(self):
        self.before, self.after, self.metrics, self.outputs = [], [], [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before.append([p.detach().clone() for p in pl_module.policy.parameters()])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after.append([p.detach().clone() for p in pl_module.policy.parameters()])
        self.metrics.append({k: float(v) for k, v in trainer.callback_metrics.items()})
        self.outputs.append(outputs)

    def changed(self, batch: int) -> bool:
        return any(not torch.equal(a, b) for a, b in zip(self.before[batch], self.after[batch]))


def fit(model_dir, steps=3, callbacks=(), checkpoint_dir=None, every_n_train_steps=1, **module_args):
    L.seed_everything(0)
    args = dict(rewards=[LengthReward()], sampling=SamplingConfig(max_tokens=8), num_generations=4,
                micro_batch_size=8, optimizer=adamw(1e-3))
    module = GRPOModule(str(model_dir), **{**args, **module_args})
    data = MathDataModule(ArithmeticSource(num_problems=64), tokenizer=str(model_dir), batch_size=2, check_gold=False)
    record = Record()
    checkpointing = [ModelCheckpoint(dirpath=checkpoint_dir, save_last=True, every_n_train_steps=every_n_train_steps)] if checkpoint_dir else []
    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=bool(checkpoint_dir),
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        callbacks=[record, *callbacks, *checkpointing], plugins=[AtomicCheckpointIO()],
    )
    trainer.fit(module, data)
    return trainer, module, record


# ---- NaN / inf updates ------------------------------------------------------------------------------------------


def test_finite_update_decision():
    assert finite_update(0.5, 1.0)
    assert not finite_update(float("nan"), 1.0)
    assert not finite_update(0.5, float("inf"))
    assert not finite_update(0.5, float("-inf"))


def test_guard_skips_and_stops_after_k_in_a_row():
    guard = NonFiniteGuard(max_consecutive=3)
    nan = float("nan")
    assert [guard.skip(*u) for u in [(1.0, 1.0), (nan, 1.0), (1.0, 1.0), (1.0, nan), (nan, nan)]] == [False, True, False, True, True]
    assert (guard.skipped, guard.consecutive) == (3, 2)
    with pytest.raises(TrainingError, match=r"not finite for 3 updates in a row .*4 skipped in all.*learning rate \(model.optimizer's lr\).*max_grad_norm.*precision"):
        guard.skip(nan, 1.0)
    restored = NonFiniteGuard(3)
    restored.load_state_dict(guard.state_dict())
    assert (restored.skipped, restored.consecutive) == (4, 3)
    with pytest.raises(ConfigError):
        NonFiniteGuard(0)


def test_guard_follows_the_ranks_decision_and_leaves_fp16_to_its_scaler():
    class Strategy:  # two ranks, the other one saw a NaN
        class precision_plugin:
            scaler = None

        def reduce_boolean_decision(self, decision, all=True):
            return decision and False

    guard = NonFiniteGuard(3)
    assert guard.skip(1.0, 1.0, Strategy()) and guard.skipped == 1  # finite here, skipped because a rank was not

    class Fp16(Strategy):
        class precision_plugin:
            scaler = object()

    assert not guard.skip(float("nan"), float("nan"), Fp16()) and guard.skipped == 1


def test_nan_update_is_skipped_and_training_continues(tiny_model_dir):
    """Update 1 is NaN: the weights and the optimizer state stay as they were, train/skipped_steps counts it,
    global_step and the LR schedule count only real updates, and max_steps is still reached."""
    trainer, module, record = fit(tiny_model_dir, steps=3, loss=NaNLoss(nan_at=[1]))
    assert len(record.after) == 4 and trainer.global_step == 3  # one extra batch for the skipped update
    assert [record.changed(b) for b in range(4)] == [True, False, True, True]
    assert [m["train/skipped_steps"] for m in record.metrics] == [0, 1, 1, 1]
    assert math.isnan(record.metrics[1]["loss"]) and all(math.isfinite(record.metrics[b]["loss"]) for b in (0, 2, 3))
    optimizer = trainer.optimizers[0]
    assert all(int(optimizer.state[p]["step"]) == 3 for p in module.policy.parameters())
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 3


def test_consecutive_nan_updates_stop_with_the_fix(tiny_model_dir, tmp_path):
    with pytest.raises(TrainingError, match="not finite for 2 updates in a row") as error:
        fit(tiny_model_dir, steps=5, loss=NaNLoss(nan_at=[2, 3]), max_consecutive_nonfinite=2,
            callbacks=[GracefulStop()], checkpoint_dir=tmp_path)
    assert error.value.resume_hint.endswith(f"--ckpt_path {tmp_path / 'last.ckpt'}")
    state = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert state["global_step"] == 2 and state["nonfinite"] == {"skipped": 0, "consecutive": 0}
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values())


# ---- rewards that fail ------------------------------------------------------------------------------------------


def test_reward_on_error_zero_scores_only_the_failing_completions_zero():
    completions = ["ok", "bad one", "fine!", "also bad"]
    scores, errors = score_completions([FlakyReward(on_error="zero"), LengthReward()], ["q"] * 4, completions, ["1"] * 4)
    assert scores[0].tolist() == pytest.approx([1 / 3, 0.0, 1 / 6, 0.0])
    assert scores[1].tolist() == pytest.approx([1 / (1 + len(c)) for c in completions])
    assert errors.tolist() == [2, 0]


def test_reward_returning_nan_under_zero_is_scored_zero_and_counted():
    class NaNOnLong(LengthReward):
        def __call__(self, prompts, completions, answers):
            return [float("nan") if len(c) > 3 else 1.0 for c in completions]

    scores, errors = score_completions([NaNOnLong(on_error="zero")], ["q"] * 3, ["a", "long", "b"], ["1"] * 3)
    assert scores[0].tolist() == [1.0, 0.0, 1.0] and errors.tolist() == [1]


def test_raising_reward_names_the_completion_it_fails_on():
    with pytest.raises(RewardError, match=r"(?s)reward 'flaky' \(FlakyReward\) raised ValueError.*on completion 2 'so bad'.*on_error: zero") as error:
        score_completions([FlakyReward()], ["q"] * 3, ["fine", "good", "so bad"], ["1", "2", "3"])
    assert "(gold '3')" in str(error.value)
    assert isinstance(error.value.__cause__, ValueError)


def test_reward_failing_only_on_whole_batches_is_reported_as_such():
    class BatchOnly(LengthReward):
        def __call__(self, prompts, completions, answers):
            if len(completions) > 1:
                raise IndexError("batch bug")
            return super().__call__(prompts, completions, answers)

    with pytest.raises(RewardError, match="each alone scored without error"):
        score_completions([BatchOnly()], ["q"] * 2, ["a", "b"], ["1", "1"])
    scores, errors = score_completions([BatchOnly(on_error="zero")], ["q"] * 2, ["a", "bb"], ["1", "1"])
    assert scores[0].tolist() == pytest.approx([1 / 2, 1 / 3]) and errors.tolist() == [0]


def test_on_error_is_checked_and_reaches_the_builtin_rewards():
    assert FormatReward(on_error="zero").on_error == "zero"
    with pytest.raises(ConfigError, match="on_error"):
        BrokenReward(on_error="ignore")


def test_fit_with_a_failing_reward_on_zero_logs_its_errors(tiny_model_dir):
    """With an empty trigger the flaky reward fails on every completion: each scores 0, rewards/flaky/errors
    counts all 2 × 4 of them per step, and training goes on."""
    trainer, _, record = fit(tiny_model_dir, steps=2, rewards=[FlakyReward(trigger="", on_error="zero"), LengthReward()])
    assert trainer.global_step == 2
    assert [m["rewards/flaky/errors"] for m in record.metrics] == [8, 8]
    assert [m["rewards/flaky/mean"] for m in record.metrics] == [0, 0]
    assert "rewards/length/errors" not in record.metrics[0]  # only rewards that may score errors 0 log the count


def test_answer_checking_workers_outlive_a_sigterm_to_the_job():
    """A scheduler's SIGTERM reaches every process of the job; the workers must finish the step's checks (the
    trainer stops after it) instead of dying and scoring the step's answers 0."""
    from r1lit.grading.verifier import SafeVerifier

    verifier = SafeVerifier(num_workers=1)
    try:
        assert verifier.run([("2", "2")]) == [1.0]
        worker = verifier._workers[0].process
        worker.send_signal(signal.SIGTERM)
        assert verifier.run([("3", "3"), ("4", "5")]) == [1.0, 0.0]
        assert verifier._workers[0].process is worker and worker.poll() is None
    finally:
        verifier.close()


# ---- engines that die or return nothing useful ------------------------------------------------------------------


def test_dying_engine_is_one_clear_error_with_its_cause(tiny_model_dir, tmp_path):
    with pytest.raises(EngineError, match=r"(?s)DyingEngine failed while generating: RuntimeError: EngineCore.*gpu_memory_utilization") as error:
        fit(tiny_model_dir, steps=5, engine=DyingEngine(die_at=3), callbacks=[GracefulStop()], checkpoint_dir=tmp_path)
    assert isinstance(error.value.__cause__, RuntimeError)
    assert f"--ckpt_path {tmp_path / 'last.ckpt'}" in error.value.resume_hint
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 2


@pytest.mark.parametrize("mode", ["empty", "eos", "same"])
def test_degenerate_rollouts_train_without_nan(tiny_model_dir, mode):
    """Empty completions, EOS-only completions, one completion everywhere: every group has zero reward spread,
    so advantages are 0; nothing logged is NaN and the step does not crash."""
    from r1lit.grpo.importance_sampling import ImportanceSampling

    trainer, _, record = fit(tiny_model_dir, steps=2, engine=DegenerateEngine(mode),
                             loss=GRPOLoss(importance_sampling=ImportanceSampling()))
    assert trainer.global_step == 2
    for metrics in record.metrics:
        assert all(math.isfinite(v) for v in metrics.values()), metrics
        assert metrics["frac_reward_zero_std"] == 1.0 and metrics["reward_std"] == 0.0
        assert metrics["completions/mean_length"] == {"empty": 0, "eos": 1, "same": 4}[mode]
        assert metrics["loss"] == 0.0
    advantages = [c.advantage for out in record.outputs for g in out["groups"] for c in g.completions]
    assert advantages == [0.0] * 16


# ---- atomic checkpoint writes -----------------------------------------------------------------------------------


def test_atomic_save_replaces_the_file_or_a_link_and_cleans_leftovers(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)
    leftover = target.with_name(".last.ckpt.partial-999999")  # what a killed writer leaves
    leftover.write_bytes(b"half a checkpoint")
    io.save_checkpoint({"step": 2}, target)
    assert io.load_checkpoint(target)["step"] == 2
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]

    step_file = tmp_path / "ckpts" / "step=3.ckpt"
    io.save_checkpoint({"step": 3}, step_file)
    target.unlink()
    target.symlink_to(step_file.name)  # ModelCheckpoint(save_last="link")
    io.save_checkpoint({"step": 4}, target)
    assert not target.is_symlink() and io.load_checkpoint(step_file)["step"] == 3  # the link's target is untouched


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert io.load_checkpoint(target)["step"] == 1 and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


KILL_MID_WRITE = textwrap.dedent("""
    import io, sys, time, torch
    from pathlib import Path
    from r1lit.training.checkpoints import AtomicCheckpointIO

    target, writer = Path(sys.argv[1]), sys.argv[2]
    save = {"atomic": AtomicCheckpointIO().save_checkpoint,
            "in_place": lambda obj, path: torch.save(obj, open(path, "wb"))}[writer]
    save({"step": 1, "weights": torch.arange(1_000_000.0)}, target)
    real_save = torch.save

    def half_then_hang(obj, f, *args, **kwargs):  # a slow disk: the kill lands mid-file
        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        print("writing", flush=True)
        time.sleep(3600)

    torch.save = half_then_hang
    save({"step": 2, "weights": torch.zeros(1_000_000)}, target)
""")


@pytest.mark.parametrize("writer", ["atomic", "in_place"])
def test_kill_during_checkpoint_write(tmp_path, writer):
    """SIGKILL while the second checkpoint is half written. AtomicCheckpointIO leaves the first one intact and
    no partial file named *.ckpt; a plain in-place write (the control) leaves a truncated file."""
    target = tmp_path / "last.ckpt"
    child = subprocess.Popen([sys.executable, "-c", KILL_MID_WRITE, str(target), writer], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        child.kill()
        child.wait()
    if writer == "atomic":
        state = torch.load(target, weights_only=True)
        assert state["step"] == 1 and torch.equal(state["weights"], torch.arange(1_000_000.0))
        assert [p.name for p in tmp_path.glob("*.ckpt")] == ["last.ckpt"]
        assert [p.name for p in tmp_path.iterdir() if p.name != "last.ckpt"] == [f".last.ckpt.partial-{child.pid}"]
    else:
        with pytest.raises(Exception):
            torch.load(target, weights_only=True)


# ---- signals ----------------------------------------------------------------------------------------------------


class SignalAt(L.Callback):
    """Sends signals to this process at the end of a chosen batch, and again while the checkpoint is written."""

    def __init__(self, batch: int, sig=signal.SIGTERM, again_while_saving: bool = False):
        self.batch, self.sig, self.again_while_saving, self.sent = batch, sig, again_while_saving, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.batch:
            os.kill(os.getpid(), self.sig)
            self.sent = True

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if self.again_while_saving and self.sent:
            os.kill(os.getpid(), self.sig)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signal_stops_after_the_step_with_a_checkpoint_and_restores_handlers(tiny_model_dir, tmp_path, sig, capfd):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    stop = GracefulStop()
    trainer, _, record = fit(tiny_model_dir, steps=20, callbacks=[SignalAt(1, sig, again_while_saving=True), stop],
                             checkpoint_dir=tmp_path, every_n_train_steps=None)  # saves at epoch end otherwise
    assert trainer.global_step == 2 and len(record.after) == 2  # the signalled step finished, no further step began
    assert stop.saved_path == str(tmp_path / "last.ckpt")
    assert torch.load(stop.saved_path, weights_only=False)["global_step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # ModelCheckpoint did not save the step again
    err = capfd.readouterr().err
    assert f"{sig.name} received again: still stopping" in err
    assert f"stopped by {sig.name} after step 2" in err and f"--ckpt_path {tmp_path / 'last.ckpt'}" in err
    assert {s: signal.getsignal(s) for s in before} == before


def test_signal_without_a_save_last_checkpoint_callback_saves_where_last_finds_it(tiny_model_dir, tmp_path):
    stop = GracefulStop()
    L.seed_everything(0)
    module = GRPOModule(str(tiny_model_dir), rewards=[LengthReward()], sampling=SamplingConfig(max_tokens=8),
                        num_generations=4, micro_batch_size=8)
    data = MathDataModule(ArithmeticSource(num_problems=64), tokenizer=str(tiny_model_dir), batch_size=2, check_gold=False)
    trainer = L.Trainer(accelerator="cpu", max_steps=20, logger=False, default_root_dir=tmp_path, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[SignalAt(0), stop])
    trainer.fit(module, data)  # Lightning's default ModelCheckpoint, save_last off
    assert stop.saved_path == str(tmp_path / "checkpoints" / "last.ckpt")
    assert trainer.checkpoint_callback._find_last_checkpoints(trainer) == {stop.saved_path}  # what ckpt_path="last" looks at


# ---- parse-time checks ------------------------------------------------------------------------------------------


@pytest.fixture
def nothing_loads(monkeypatch):
    """Parse-time checks must fail before any model or tokenizer is loaded."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was checked")

    monkeypatch.setattr("r1lit.module.load_policy", refuse)
    monkeypatch.setattr("r1lit.module.load_tokenizer", refuse)
    monkeypatch.setattr("r1lit.data.datamodule.load_tokenizer", refuse, raising=False)


def parse_error(capsys, tmp_path, config) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(write_config(tmp_path, config))])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_rewards_are_weighted_in_one_place(capsys, tmp_path, tiny_model_dir):
    """Guards the two ways weights could be given (a list on the module and each reward's own, with a check that
    existed only to forbid both): a reward's weight is its own ``weight``, and the list is no setting."""
    config = tiny_config(tmp_path, tiny_model_dir, **{"model.reward_weights": [1.0, 0.5, 2.0]})
    assert "reward_weights" in parse_error(capsys, tmp_path, config)
    module = GRPOModule(str(tiny_model_dir), rewards=[LengthReward(weight=0.25), FormatReward(weight=2.0)], num_generations=2)
    assert [r.weight for r in module.rewards] == [0.25, 2.0]


@pytest.mark.parametrize("strategy", ["deepspeed_stage_2", {"class_path": "lightning.pytorch.strategies.DeepSpeedStrategy"}])
def test_deepspeed_without_cuda_names_the_fix(capsys, tmp_path, tiny_model_dir, nothing_loads, monkeypatch, strategy):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = tiny_config(tmp_path, tiny_model_dir, **{"trainer.strategy": strategy, "trainer.accelerator": "auto"})
    err = parse_error(capsys, tmp_path, config)
    assert "trainer.strategy asks for DeepSpeed, which needs CUDA GPUs, but no CUDA GPU is visible" in err
    assert "configs/smollm2-cpu.yaml" in err and "trainer.strategy: auto" in err


def test_deepspeed_on_the_cpu_accelerator_names_the_fix(capsys, tmp_path, tiny_model_dir, nothing_loads, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = tiny_config(tmp_path, tiny_model_dir, **{"trainer.strategy": "deepspeed"})
    assert "needs CUDA GPUs, but trainer.accelerator is cpu" in parse_error(capsys, tmp_path, config)


def with_vllm(config: dict, engine: str = "VLLMEngine", **engine_args) -> dict:
    config["model"]["engine"] = {"class_path": engine, "init_args": engine_args}
    return config


def test_completion_longer_than_the_engine_holds_names_the_fix(capsys, tmp_path, tiny_model_dir, nothing_loads):
    config = tiny_config(tmp_path, tiny_model_dir, **{"model.sampling.max_tokens": 512, "data.max_prompt_length": 256})
    err = parse_error(capsys, tmp_path, with_vllm(config, max_model_len=600))
    assert "max_model_len=600 is shorter than data.max_prompt_length + model.sampling.max_tokens = 256 + 512 = 768" in err


def test_reserved_engine_without_a_spare_gpu_is_refused(capsys, tmp_path, tiny_model_dir, nothing_loads, monkeypatch):
    """A GPU machine whose GPUs all train has none left for the engine: refuse instead of sharing a training GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    config = with_vllm(tiny_config(tmp_path, tiny_model_dir, **{"trainer.accelerator": "gpu", "trainer.devices": 2}),
                       "VLLMServerEngine")
    err = parse_error(capsys, tmp_path, config)
    assert "2 visible GPU(s) on this node, trainer.devices=2 train, so 2 + 1 = 3 are needed" in err
    assert "trainer.devices=1 (visible − K = 2 − 1)" in err


def test_reserved_engine_is_checked_on_every_node_that_starts_one(capsys, tmp_path, tiny_model_dir, monkeypatch):
    """Multi-node: with an engine per node (the default) every node needs its spare GPU; with one engine for the job
    (engine_per_node: false) only node 0 does, and another node whose GPUs all train parses."""
    from r1lit.cli.command import R1LitCLI
    from r1lit.data import MathDataModule

    class ParseOnly(R1LitCLI):
        def instantiate_classes(self) -> None:
            pass

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)

    def refusal(node: int, **engine_args) -> str:
        """The parse error on node ``node`` ("" when the config parses)."""
        monkeypatch.setenv("NODE_RANK", str(node))
        config = with_vllm(tiny_config(tmp_path, tiny_model_dir, **{"trainer.accelerator": "gpu", "trainer.devices": 2,
                                                                    "trainer.num_nodes": 2}),
                           "VLLMServerEngine", **engine_args)
        try:
            ParseOnly(GRPOModule, MathDataModule, run=False, args=["--config", str(write_config(tmp_path, config))])
        except SystemExit:
            return capsys.readouterr().err
        return ""

    needs = "needs 1 GPU(s) per node that do not train: 2 visible GPU(s) on this node, trainer.devices=2 train"
    assert "node 1: VLLMServerEngine " + needs in refusal(1)  # an engine per node: node 1 starts one too
    assert "engine_per_node: false" in refusal(0)
    assert refusal(1, engine_per_node=False) == ""  # one engine for the job: node 1 only trains
    assert needs in refusal(0, engine_per_node=False)


def test_colocated_engine_that_leaves_the_trainer_no_memory_is_refused(capsys, tmp_path, tiny_model_dir, nothing_loads,
                                                                        monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = with_vllm(tiny_config(tmp_path, tiny_model_dir, **{"trainer.accelerator": "gpu"}),
                       gpu_memory_utilization=0.95)
    assert "leaves the trainer less than 10 %" in parse_error(capsys, tmp_path, config)


def test_generations_that_do_not_fit_the_batch_name_the_fix(capsys, tmp_path, tiny_model_dir, nothing_loads):
    config = tiny_config(tmp_path, tiny_model_dir, **{"model.num_generations": 3})  # 2 × 3 = 6 completions, micro 4
    assert "does not divide the rollout" in parse_error(capsys, tmp_path, config)


def test_the_cli_adds_graceful_stop_and_atomic_writes_unless_the_config_names_its_own(tmp_path, tiny_model_dir):
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from r1lit.cli.command import R1LitCLI

    def trainer_for(config):
        path = write_config(tmp_path, config)
        return R1LitCLI(GRPOModule, MathDataModule, run=False, args=["--config", str(path)]).trainer

    trainer = trainer_for(tiny_config(tmp_path, tiny_model_dir))
    assert sum(isinstance(c, GracefulStop) for c in trainer.callbacks) == 1
    assert type(trainer.strategy.checkpoint_io) is AtomicCheckpointIO

    config = tiny_config(tmp_path, tiny_model_dir)
    config["trainer"]["callbacks"].append({"class_path": "GracefulStop", "init_args": {"signals": ["SIGUSR1"]}})
    config["trainer"]["plugins"] = [{"class_path": "lightning.pytorch.plugins.io.TorchCheckpointIO"}]
    trainer = trainer_for(config)
    assert [c.signals for c in trainer.callbacks if isinstance(c, GracefulStop)] == [[signal.SIGUSR1]]
    assert type(trainer.strategy.checkpoint_io) is TorchCheckpointIO

    config = tiny_config(tmp_path, tiny_model_dir)
    config["trainer"]["strategy"] = {"class_path": "lightning.pytorch.strategies.SingleDeviceStrategy",
                                     "init_args": {"device": "cpu", "checkpoint_io": {"class_path": "lightning.pytorch.plugins.io.TorchCheckpointIO"}}}
    assert type(trainer_for(config).strategy.checkpoint_io) is TorchCheckpointIO
