"""Dynamic sampling through the real ``r1lit fit``: two DDP ranks that each fill their own share and stay in step,
and a run stopped mid-way that resumes (extra problems included) to the uninterrupted run's weights, bitwise."""

import json
from pathlib import Path

import pytest
import torch

from helpers import fit, tiny_config, write_config

pytestmark = pytest.mark.slow


def ds_run_config(tmp_path: Path, model_dir: Path, run: str, devices: int = 1, stop_at: int | None = None) -> Path:
    folder = tmp_path / run
    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_config(folder, model_dir, **{
        "trainer.devices": devices,
        "trainer.max_steps": 4,
        "model.rewards": [{"class_path": "custom_rewards.HalfFlatReward"}],  # even answers: flat groups
        "model.dynamic_sampling": {"class_path": "DynamicSampling", "init_args": {"max_num_gen_batches": 8}},
        # on in both runs: its memory of flat problems is shared across ranks and restored from the checkpoint
        "model.difficulty_filter": {"class_path": "DifficultyFilter", "init_args": {"max_age": 20}},
        "model.micro_batch_size": 8,
        "data.source": {"class_path": "ArithmeticSource", "init_args": {"num_problems": 16}},  # 8 batches / rank / epoch
    })
    config["trainer"]["callbacks"] = [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"every_n_train_steps": 1, "save_last": True}},
        {"class_path": "recorders.GroupRecorder", "init_args": {"path": str(folder / "groups")}},
        {"class_path": "recorders.ParamHashRecorder", "init_args": {"path": str(folder / "params")}},
        *([{"class_path": "recorders.StopAtStep", "init_args": {"step": stop_at}}] if stop_at else []),
    ]
    if devices > 1:
        config["trainer"]["strategy"] = {"class_path": "lightning.pytorch.strategies.DDPStrategy",
                                         "init_args": {"process_group_backend": "gloo"}}
    return write_config(folder, config)


def records(folder: Path, rank: int) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, (folder / f"groups.rank{rank}").read_text().splitlines())}


def test_two_ranks_each_fill_their_share_and_stay_in_step(tmp_path, tiny_model_dir):
    """Guards multi-rank dynamic sampling: every rank trains batch_size informative groups of its own, both run the
    same number of rounds (equal extra draws: no rank left waiting in a collective) and hold the same weights."""
    fit(ds_run_config(tmp_path, tiny_model_dir, "ddp", devices=2))
    folder = tmp_path / "ddp"
    ranks = [records(folder, r) for r in (0, 1)]
    assert sorted(ranks[0]) == sorted(ranks[1]) == [1, 2, 3, 4]
    for step in ranks[0]:
        a, b = ranks[0][step], ranks[1][step]
        assert a["extra_drawn"] == b["extra_drawn"]  # same rounds on both ranks
        for rec in (a, b):
            assert len(rec["groups"]) == 2 and not any(g["flat"] for g in rec["groups"])
        assert [g["texts"] for g in a["groups"]] != [g["texts"] for g in b["groups"]]  # each its own share
    assert ranks[0][4]["extra_drawn"] > 0
    params = [{r["step"]: r["hash"] for r in map(json.loads, Path(f"{folder}/params.rank{k}").read_text().splitlines())}
              for k in (0, 1)]
    assert params[0] == params[1], "the two ranks hold different weights"


def test_stopped_run_resumes_with_its_extra_problems_to_the_same_weights(tmp_path, tiny_model_dir):
    """Guards exact resume under dynamic sampling: the extra problems drawn are part of the data position, so the
    resumed steps train on the same groups and end bitwise equal to an uninterrupted run."""
    fit(ds_run_config(tmp_path, tiny_model_dir, "straight"))
    fit(ds_run_config(tmp_path, tiny_model_dir, "resumed", stop_at=2))
    assert sorted(records(tmp_path / "resumed", 0)) == [1, 2]
    fit(ds_run_config(tmp_path, tiny_model_dir, "resumed"), "--ckpt_path", "last")
    straight, resumed = records(tmp_path / "straight", 0), records(tmp_path / "resumed", 0)
    assert sorted(resumed) == [1, 2, 3, 4] and resumed[2]["extra_drawn"] > 0
    for step in (3, 4):
        assert resumed[step] == straight[step], f"step {step} trained on other groups after the resume"
    load = lambda run: torch.load(tmp_path / run / "runs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt",  # noqa: E731
                                  map_location="cpu", weights_only=False)
    a, b = load("straight"), load("resumed")
    assert a["global_step"] == b["global_step"] == 4
    different = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert not different, f"weights differ after resume (bitwise): {different[:5]}"
