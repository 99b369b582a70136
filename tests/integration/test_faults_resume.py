"""Nothing lost on resume or export, end to end on the tiny model: a CSV log keeps its history across resumes
(also across one that fails), the run's config.yaml stays the one it started with, ``--ckpt_path last`` takes the
newest checkpoint whatever wrote it, a second run cannot take a live run's folder, and ``r1lit export`` deletes
nothing it did not write."""

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from helpers import SCRIPT, SUBPROCESS_ENV, fit_command, scalars, tiny_config

pytestmark = pytest.mark.slow


def config_for(tmp_path: Path, model_dir: Path, steps: int, logger: str = "CSVLogger", save_last: bool = True) -> dict:
    config = tiny_config(tmp_path, model_dir, **{"trainer.max_steps": steps})
    config["trainer"]["logger"] = {"class_path": f"lightning.pytorch.loggers.{logger}",
                                   "init_args": {"save_dir": str(tmp_path / "runs"), "name": "tiny"}}
    config["trainer"]["callbacks"] = [
        {"class_path": "fault_helpers.StepFile", "init_args": {"path": str(tmp_path / "step")}},
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": save_last}},
    ]
    config["data"]["source"]["init_args"]["num_problems"] = 400  # no epoch ends within these runs
    return config


def start(tmp_path: Path, config: dict, *extra: str, name: str = "config.yaml") -> subprocess.Popen:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return subprocess.Popen(fit_command(path, *extra), cwd=tmp_path, env=SUBPROCESS_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def run(tmp_path: Path, config: dict, *extra: str, name: str = "config.yaml") -> subprocess.CompletedProcess:
    child = start(tmp_path, config, *extra, name=name)
    try:
        out, err = child.communicate(timeout=600)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def wait_for_step(child: subprocess.Popen, path: Path, step: int, what: str) -> None:
    deadline = time.monotonic() + 300
    while not (path.exists() and int(path.read_text() or 0) >= step):
        if child.poll() is not None:
            pytest.fail(f"r1lit fit ended (code {child.returncode}) before {what}:\n{child.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(child.pid, signal.SIGKILL)
            pytest.fail(f"no {what} within 300 s")
        time.sleep(0.1)


def logged_steps(metrics: Path) -> list[int]:
    with open(metrics, newline="") as file:
        return [int(row["step"]) for row in csv.DictReader(file) if row.get("reward")]


def global_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def test_csv_history_and_config_survive_a_resume_and_a_failing_resume(tmp_path, tiny_model_dir):
    config = config_for(tmp_path, tiny_model_dir, steps=2)
    assert run(tmp_path, config).returncode == 0
    folder = tmp_path / "runs" / "tiny" / "version_0"
    first_config = (folder / "config.yaml").read_text()
    assert logged_steps(folder / "metrics.csv") == [0, 1]

    config["trainer"]["max_steps"] = 3
    resumed = run(tmp_path, config, "--ckpt_path", "last", name="resume.yaml")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert logged_steps(folder / "metrics.csv") == [0, 1, 2]  # appended, not rewritten
    assert (folder / "config.yaml").read_text() == first_config
    assert yaml.safe_load((folder / "config.1.yaml").read_text())["trainer"]["max_steps"] == 3

    config["trainer"]["max_steps"] = 5
    config["model"]["rewards"] = [{"class_path": "custom_rewards.BrokenReward"}]
    failed = run(tmp_path, config, "--ckpt_path", "last", name="broken.yaml")
    assert failed.returncode == 1 and "r1lit: error: reward 'broken'" in failed.stderr, failed.stderr[-3000:]
    assert logged_steps(folder / "metrics.csv") == [0, 1, 2]
    assert (folder / "config.yaml").read_text() == first_config
    assert "BrokenReward" in (folder / "config.2.yaml").read_text()
    assert not (folder / ".r1lit.lock").exists()  # released after a failure
    assert not (tmp_path / "runs" / "tiny" / "version_1").exists()


def test_last_is_the_newest_checkpoint_not_a_stale_last_ckpt(tmp_path, tiny_model_dir):
    """No ModelCheckpoint(save_last): the graceful stop writes last.ckpt at step k, the resume to k+2 writes
    epoch=0-step=<k+2>.ckpt, and the next --ckpt_path last continues from k+2, not from the stale last.ckpt."""
    config = config_for(tmp_path, tiny_model_dir, steps=50, logger="TensorBoardLogger", save_last=False)
    child = start(tmp_path, config)
    wait_for_step(child, tmp_path / "step", 1, "the first step")
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 0, err[-3000:]
    folder = tmp_path / "runs" / "tiny" / "version_0" / "checkpoints"
    k = global_step(folder / "last.ckpt")

    config["trainer"]["max_steps"] = k + 2
    assert run(tmp_path, config, "--ckpt_path", "last", name="resume.yaml").returncode == 0
    assert global_step(folder / f"epoch=0-step={k + 2}.ckpt") == k + 2 and global_step(folder / "last.ckpt") == k

    config["trainer"]["max_steps"] = k + 3
    (tmp_path / "step").unlink()
    again = run(tmp_path, config, "--ckpt_path", "last", name="again.yaml")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(scalars(folder.parent)["reward"]) == k + 3  # one step more, not steps k+1..k+3 trained again
    assert f"from epoch=0-step={k + 2}.ckpt" in again.stderr
    assert int((tmp_path / "step").read_text()) == k + 3
    assert global_step(folder / f"epoch=0-step={k + 3}.ckpt") == k + 3


def test_a_live_runs_folder_is_not_taken_and_a_dead_runs_lock_is(tmp_path, tiny_model_dir):
    config = config_for(tmp_path, tiny_model_dir, steps=100_000)  # still running when the second run starts
    config["trainer"]["logger"]["init_args"]["version"] = "run"
    live = start(tmp_path, config)
    try:
        wait_for_step(live, tmp_path / "step", 1, "the first step")
        second = run(tmp_path, config, "--ckpt_path", "last", name="second.yaml")
        first = second.stderr.splitlines()[0]
        assert second.returncode == 1
        assert first.startswith(f"r1lit: error: the run folder {tmp_path / 'runs' / 'tiny' / 'run'} is in use by a "
                                f"live run (pid {live.pid} "), first
    finally:
        live.send_signal(signal.SIGTERM)
        live.communicate(timeout=300)
    assert live.returncode == 0
    lock = tmp_path / "runs" / "tiny" / "run" / ".r1lit.lock"
    assert not lock.exists()

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(f"{int(dead.stdout)} {socket.gethostname()}\n")  # a run killed with -9 left it
    config["trainer"]["max_steps"] = global_step(tmp_path / "runs" / "tiny" / "run" / "checkpoints" / "last.ckpt") + 1
    resumed = run(tmp_path, config, "--ckpt_path", "last", name="resume.yaml")
    assert resumed.returncode == 0, resumed.stderr[-3000:]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, tiny_model_dir) -> Path:
    tmp_path = tmp_path_factory.mktemp("export-run")
    assert run(tmp_path, config_for(tmp_path, tiny_model_dir, steps=1)).returncode == 0
    return tmp_path / "runs" / "tiny" / "version_0"


def export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), "export", *map(str, args)], env=SUBPROCESS_ENV, capture_output=True,
                          text=True, timeout=300)


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def test_export_refuses_the_folder_that_holds_its_checkpoint(run_folder):
    before = listing(run_folder)
    result = export(run_folder / "checkpoints" / "last.ckpt", run_folder, "--overwrite")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith(f"r1lit: error: export folder {run_folder} holds the checkpoint")
    assert listing(run_folder) == before


def test_export_replaces_only_its_own_folders(run_folder, tmp_path):
    checkpoint = run_folder / "checkpoints" / "last.ckpt"
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("keep me")
    refused = export(checkpoint, mine)
    assert refused.returncode == 1 and "is not empty and was not written by r1lit export" in refused.stderr.splitlines()[0]
    assert listing(mine) == {"todo.txt": 7}

    out = tmp_path / "hf"
    assert export(checkpoint, out).returncode == 0
    assert export(checkpoint, out, "--dtype", "bfloat16").returncode == 0  # a previous export is replaced
    (out / "extra.txt").write_text("added by hand")
    assert export(checkpoint, out).returncode == 1  # no longer only what an export wrote
    assert (out / "extra.txt").exists()

    failed = export(checkpoint, tmp_path / "new", "--model", tmp_path / "no-such-model")
    assert failed.returncode == 1 and "no such folder" in failed.stderr.splitlines()[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "notes"]

    assert export(checkpoint, mine, "--overwrite").returncode == 0
    assert "todo.txt" not in listing(mine) and (mine / "config.json").exists()
