"""Exact resume: the data order is a function of (seed, epoch), sampling seeds of (seed, step, rank), and
``--ckpt_path last`` finds the run's own folder; a SIGKILLed run resumed from its last checkpoint ends where an
uninterrupted run ends."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from r1lit.data.sampler import ResumableSampler
from r1lit.cli.resume import last_checkpoint_version
from r1lit.training.seeds import derive_seed
from helpers import SUBPROCESS_ENV, fit_command, tiny_config, write_config


def test_epoch_order_depends_only_on_seed_and_epoch():
    a, b = ResumableSampler(10, 2, seed=3), ResumableSampler(10, 2, seed=3)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) and sorted(a) == list(range(10))
    b.set_epoch(2)
    assert list(a) != list(b)
    assert list(ResumableSampler(10, 2, seed=4)) != list(ResumableSampler(10, 2, seed=3))


def test_resume_skips_the_batches_already_trained_on_once():
    full = ResumableSampler(10, 2, seed=0)
    full.set_epoch(1)
    resumed = ResumableSampler(10, 2, seed=0)
    resumed.resume(epoch=1, batches_done=3)
    assert list(resumed) == list(full)[6:]
    assert len(resumed) == 10  # the full epoch: Lightning counts the restored batches
    assert list(resumed) == list(full)  # the skip applies to the first pass only


def test_resume_at_an_epoch_end_starts_the_next_epoch():
    resumed = ResumableSampler(10, 2, seed=0)
    resumed.resume(epoch=0, batches_done=5)
    nxt = ResumableSampler(10, 2, seed=0)
    nxt.set_epoch(1)
    assert resumed.epoch == 1 and list(resumed) == list(nxt)


def test_ranks_get_disjoint_whole_batches():
    ranks = [ResumableSampler(11, 2, num_replicas=2, rank=r, seed=0) for r in range(2)]
    shares = [list(s) for s in ranks]
    assert [len(s) for s in shares] == [4, 4]  # 11 // (2 × 2) = 2 batches of 2 per rank; 3 left out this epoch
    assert not set(shares[0]) & set(shares[1])


def test_derived_seeds_differ_by_step_and_rank_and_repeat():
    seeds = {derive_seed(0, step, rank) for step in range(50) for rank in range(4)}
    assert len(seeds) == 200 and all(0 <= s < 2**31 for s in seeds)
    assert derive_seed(0, 7, 1) == derive_seed(0, 7, 1)


def test_last_checkpoint_version_picks_the_newest_run_with_a_complete_checkpoint(tmp_path):
    for version, content in [(0, "whole"), (1, "whole"), (2, None), (3, "truncated")]:
        folder = tmp_path / "tiny" / f"version_{version}" / "checkpoints"
        folder.mkdir(parents=True)
        if content:
            torch.save({"global_step": version}, folder / "epoch=0-step=1.ckpt")
        if content == "truncated":
            data = (folder / "epoch=0-step=1.ckpt").read_bytes()
            (folder / "epoch=0-step=1.ckpt").write_bytes(data[: len(data) // 2])
    assert last_checkpoint_version(tmp_path, "tiny") == 1
    assert last_checkpoint_version(tmp_path, "other") is None


def _config(tmp_path: Path, model_dir: Path, run: str, steps: int) -> Path:
    config = tiny_config(tmp_path / run, model_dir, **{
        "trainer.max_steps": steps,
        "data.source": {"class_path": "ArithmeticSource", "init_args": {"num_problems": 8}},  # 4 batches per epoch
    })
    config["trainer"]["callbacks"] = [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"every_n_train_steps": 1, "save_last": True}},
        {"class_path": "recorders.BatchRecorder", "init_args": {"path": str(tmp_path / f"{run}.jsonl")}},
    ]
    (tmp_path / run).mkdir(parents=True, exist_ok=True)
    return write_config(tmp_path / run, config)


def _records(path: Path) -> dict[int, list[str]]:
    return {r["step"]: r["problems"] for r in map(json.loads, path.read_text().splitlines())}


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_uninterrupted_runs_weights(tmp_path, tiny_model_dir):
    steps, kill_after = 6, 3  # 4 batches per epoch: the resume is mid-epoch and then crosses into epoch 1
    env = SUBPROCESS_ENV
    done = subprocess.run(fit_command(_config(tmp_path, tiny_model_dir, "straight", steps)), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    command = fit_command(_config(tmp_path, tiny_model_dir, "killed", steps))
    log = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (log.exists() and kill_after in _records(log)):  # step 4 has begun: step 3's checkpoint is written
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_dir = tmp_path / "killed" / "runs" / "tiny" / "version_0"
    assert torch.load(killed_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == kill_after

    resumed = subprocess.run(command + ["--ckpt_path", "last"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr and not (killed_dir.parent / "version_1").exists()  # its own folder
    assert "not resumable" not in resumed.stderr  # Lightning knows the loader resumes mid-epoch

    straight, after = _records(tmp_path / "straight.jsonl"), _records(log)
    assert sorted(after) == list(range(steps))
    for step in range(kill_after, steps):
        assert after[step] == straight[step], f"step {step + 1} saw other problems after the resume"
    a, b = _weights(tmp_path / "straight" / "runs" / "tiny" / "version_0"), _weights(killed_dir)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ after resume (bitwise): {different[:5]}"
