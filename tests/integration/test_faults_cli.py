"""Faults against a real ``r1lit fit`` subprocess on the tiny model: signals, a kill while a checkpoint is being
written, NaN updates, a failing reward and a dying engine, each followed by a resume from the checkpoint left."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from helpers import SUBPROCESS_ENV as ENV
from helpers import fit_command, scalars, tiny_config

pytestmark = pytest.mark.slow


def config_for(tmp_path: Path, model_dir: Path, steps: int, every_step: bool = False, **overrides) -> dict:
    config = tiny_config(tmp_path, model_dir, **{"trainer.max_steps": steps, **overrides})
    config["trainer"]["logger"]["init_args"]["version"] = "run"  # a resume logs into the same folder
    config["trainer"]["callbacks"] = [
        {"class_path": "fault_helpers.StepFile", "init_args": {"path": str(tmp_path / "step")}},
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"save_last": True, **({"every_n_train_steps": 1} if every_step else {})}},
    ]
    config["data"]["source"]["init_args"]["num_problems"] = 400  # no epoch ends within these runs
    return config


def start(tmp_path: Path, config: dict, *extra: str, name: str = "config.yaml") -> subprocess.Popen:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return subprocess.Popen(fit_command(path, *extra), cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def run(tmp_path: Path, config: dict, *extra: str, name: str = "config.yaml") -> subprocess.CompletedProcess:
    child = start(tmp_path, config, *extra, name=name)
    out, err = child.communicate(timeout=600)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def wait_for(condition, child: subprocess.Popen, what: str) -> None:
    """Polls until ``condition()`` holds; fails (with the child's output) if the child ends first."""
    while not condition():
        if child.poll() is not None:
            out, err = child.communicate()
            pytest.fail(f"r1lit fit ended (code {child.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(0.1)


def step_reached(path: Path, step: int):
    return lambda: path.exists() and int(path.read_text() or 0) >= step


def global_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def checkpoint_from_message(err: str, pattern: str) -> Path:
    match = re.search(pattern + r".*?--ckpt_path (\S+)", err, re.S)
    assert match, err[-3000:]
    return Path(match.group(1))


def resume_to(tmp_path: Path, config: dict, checkpoint: Path, steps: int) -> None:
    config = {**config, "trainer": {**config["trainer"], "max_steps": steps}}
    resumed = run(tmp_path, config, "--ckpt_path", str(checkpoint), name="resume.yaml")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert global_step(checkpoint) == steps


@pytest.mark.parametrize("sig, to_group", [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=["SIGTERM", "SIGINT-group"])
def test_signal_saves_exits_zero_and_resumes(tmp_path, tiny_model_dir, sig, to_group):
    """SIGTERM to the trainer (a scheduler's preemption), SIGINT to its whole process group (Ctrl-C, which also
    reaches the answer-checking workers): the step ends, last.ckpt holds it, exit 0, and the resume runs on."""
    config = config_for(tmp_path, tiny_model_dir, steps=50)
    child = start(tmp_path, config)
    wait_for(step_reached(tmp_path / "step", 1), child, "its first step")
    os.killpg(child.pid, sig) if to_group else child.send_signal(sig)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err[-3000:]
    match = re.search(rf"stopped by {sig.name} after step (\d+); checkpoint saved to (\S+)", err)
    assert match, err[-3000:]
    step, checkpoint = int(match.group(1)), Path(match.group(2))
    run_dir = tmp_path / "runs" / "tiny" / "run"
    assert checkpoint == run_dir / "checkpoints" / "last.ckpt" and 1 <= step < 50
    assert global_step(checkpoint) == step
    assert [p.name for p in checkpoint.parent.iterdir()] == ["last.ckpt"]  # saved once, not again at "epoch end"
    assert len(scalars(run_dir)["reward"]) == step

    resume_to(tmp_path, config, checkpoint, step + 2)
    assert len(scalars(run_dir)["reward"]) == step + 2


def test_sigterm_to_rank_zero_stops_both_ranks_after_the_same_step(tmp_path, tiny_model_dir):
    """DDP on two CPU processes, the signal reaching rank 0 only: the ranks agree to stop after the same step
    (a rank that went on alone would hang in the next all-reduce), and rank 0 saves."""
    config = config_for(tmp_path, tiny_model_dir, steps=50, **{"trainer.devices": 2, "trainer.strategy": "ddp"})
    child = start(tmp_path, config)
    wait_for(step_reached(tmp_path / "step", 1), child, "its first step")
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err[-3000:]
    match = re.search(r"stopped by SIGTERM after step (\d+); checkpoint saved to (\S+)", err)
    assert match, err[-3000:]
    assert global_step(Path(match.group(2))) == int(match.group(1))


def test_kill_while_last_ckpt_is_written_leaves_the_previous_one_resumable(tmp_path, tiny_model_dir):
    """SIGKILL while step 2's last.ckpt is half written: last.ckpt is still step 1's, whole, and resumes."""
    config = config_for(tmp_path, tiny_model_dir, steps=10, every_step=True)
    marker = tmp_path / "writing"
    config["trainer"]["callbacks"].append(
        {"class_path": "fault_helpers.BlockCheckpointWrite", "init_args": {"marker": str(marker), "nth": 2}})
    child = start(tmp_path, config)
    wait_for(marker.exists, child, "the second write of last.ckpt")
    os.killpg(child.pid, signal.SIGKILL)
    child.communicate(timeout=60)
    folder = tmp_path / "runs" / "tiny" / "run" / "checkpoints"
    assert global_step(folder / "last.ckpt") == 1
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["epoch=0-step=2.ckpt", "last.ckpt"]  # the partial is not *.ckpt
    config["trainer"]["callbacks"].pop()
    resume_to(tmp_path, config, folder / "last.ckpt", 3)


def test_nan_updates_skip_then_stop_with_the_fix_and_the_checkpoint_resumes(tmp_path, tiny_model_dir):
    """Update 1 NaN (skipped, counted), updates 2-3 fine, then two NaN in a row with max_consecutive_nonfinite=2:
    exit 1 with the settings to change and the checkpoint to resume from; the resume keeps the skip count."""
    config = config_for(tmp_path, tiny_model_dir, steps=10, every_step=True,
                        **{"model.micro_batch_size": 8, "model.max_consecutive_nonfinite": 2})
    config["model"]["loss"] = {"class_path": "fault_helpers.NaNLoss", "init_args": {"nan_at": [1, 4, 5], "beta": 0.04}}
    failed = run(tmp_path, config)
    assert failed.returncode == 1
    assert "r1lit: error: the loss or gradient norm was not finite for 2 updates in a row" in failed.stderr
    assert "model.optimizer's lr" in failed.stderr and "Traceback" not in failed.stderr
    checkpoint = checkpoint_from_message(failed.stderr, "r1lit: the last checkpoint is")
    assert global_step(checkpoint) == 3
    run_dir = tmp_path / "runs" / "tiny" / "run"
    assert scalars(run_dir)["train/skipped_steps"] == [0, 1, 1, 1, 2]

    config["model"]["loss"] = {"class_path": "GRPOLoss", "init_args": {"beta": 0.04}}
    resume_to(tmp_path, config, checkpoint, 5)
    assert scalars(run_dir)["train/skipped_steps"][-2:] == [1, 1]


def test_dying_engine_stops_with_what_to_check_and_the_checkpoint_resumes(tmp_path, tiny_model_dir):
    config = config_for(tmp_path, tiny_model_dir, steps=10, every_step=True)
    config["model"]["engine"] = {"class_path": "fault_helpers.DyingEngine", "init_args": {"die_at": 3}}
    failed = run(tmp_path, config)
    assert failed.returncode == 1
    assert "r1lit: error: the rollout engine DyingEngine failed while generating: RuntimeError: EngineCore" in failed.stderr
    assert "gpu_memory_utilization" in failed.stderr and "worker process died" in failed.stderr
    checkpoint = checkpoint_from_message(failed.stderr, "r1lit: the last checkpoint is")
    assert checkpoint.name == "last.ckpt" and global_step(checkpoint) == 2

    del config["model"]["engine"]
    resume_to(tmp_path, config, checkpoint, 4)


def test_reward_failing_on_zero_is_counted_from_yaml(tmp_path, tiny_model_dir):
    """on_error set in YAML reaches a user's reward through its **kwargs; its failures are logged per step."""
    config = config_for(tmp_path, tiny_model_dir, steps=2)
    config["model"]["rewards"] = [{"class_path": "custom_rewards.FlakyReward", "init_args": {"trigger": "", "on_error": "zero"}},
                                  {"class_path": "custom_rewards.LengthReward"}]
    done = run(tmp_path, config)
    assert done.returncode == 0, done.stderr[-3000:]
    logged = scalars(tmp_path / "runs" / "tiny" / "run")
    assert logged["rewards/flaky/errors"] == [8, 8] and logged["rewards/flaky/mean"] == [0, 0]
    assert "reward 'flaky' (FlakyReward) failed on 8 of 8 completions, scored 0" in done.stderr


@pytest.mark.vllm
def test_dead_vllm_engine_stops_with_what_to_check_and_the_checkpoint_resumes(tmp_path, vllm_model_dir):
    """The real CPU vLLM engine losing its engine core at step 3 (it runs in-process, so there is no separate
    process to kill): exit 1 naming the engine and what to lower, and step 2's checkpoint resumes with vLLM."""
    from helpers import KV_BYTES, vllm_config

    config = vllm_config(tmp_path, vllm_model_dir, steps=10)
    (checkpointing,) = config["trainer"]["callbacks"]  # the r1lit command adds the engine's callback
    checkpointing["init_args"]["every_n_train_steps"] = 1
    engine_args = {"dtype": "float32", "kv_cache_memory_bytes": KV_BYTES}
    config["model"]["engine"] = {"class_path": "fault_helpers.DyingVLLMEngine", "init_args": {**engine_args, "die_at": 3}}
    failed = run(tmp_path, config)
    assert failed.returncode == 1
    assert "r1lit: error: the rollout engine DyingVLLMEngine failed while generating" in failed.stderr
    assert "gpu_memory_utilization" in failed.stderr
    checkpoint = checkpoint_from_message(failed.stderr, "r1lit: the last checkpoint is")
    assert global_step(checkpoint) == 2

    config["model"]["engine"] = {"class_path": "VLLMEngine", "init_args": engine_args}
    resume_to(tmp_path, config, checkpoint, 4)
