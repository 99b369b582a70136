"""The r1lit command's one-line answers, in process: the first line it writes to stderr names the cause and the
setting (the console-script versions, with Lightning's own output around them, are in test_faults_messages.py)."""

import pytest
import yaml

from helpers import tiny_config
from r1lit.cli.command import main


def first_error_line(capsys, tmp_path, config: dict, code: int = 2) -> str:
    """Settings refused while parsing exit 2 (argparse's code); failures after that exit 1."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path)])
    assert exit_info.value.code == code
    return capsys.readouterr().err.splitlines()[0]


def test_unknown_reward_class_offers_the_close_match(capsys, tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, tiny_model_dir)
    config["model"]["rewards"][1] = {"class_path": "FormatRewrd"}
    line = first_error_line(capsys, tmp_path, config)
    assert line == "r1lit: error: unknown class FormatRewrd for model.rewards[1]; did you mean FormatReward?"


def test_a_check_inside_a_component_prints_r1lit_s_own_message(capsys, tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, tiny_model_dir)
    config["model"]["loss"] = {"class_path": "GRPOLoss", "init_args": {"epsilon": -0.2}}
    line = first_error_line(capsys, tmp_path, config, code=1)  # raised while the loss is built
    assert line == "r1lit: error: clip ranges must be positive, got epsilon=-0.2, epsilon_high=None"


def test_a_parse_error_without_a_class_names_the_key(capsys, tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, tiny_model_dir, **{"trainer.max_steps": "many"})
    line = first_error_line(capsys, tmp_path, config)
    assert line.startswith("r1lit: error: trainer.max_steps: ") and "many" in line


def test_a_wrong_value_of_a_component_argument_says_what_was_expected(capsys, tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, tiny_model_dir)
    config["model"]["engine"] = {"class_path": "VLLMServerEngine", "init_args": {"enforce_eager": "maybe"}}
    line = first_error_line(capsys, tmp_path, config)
    assert line.startswith("r1lit: error: model.engine: r1lit.rollout.VLLMServerEngine: enforce_eager: "), line
    assert "bool" in line and "maybe" in line, line


@pytest.mark.parametrize("old, value, new", [
    ("importance_sampling", {"class_path": "ImportanceSampling"}, "model.loss.init_args.importance_sampling"),
    ("entropy_coef", 0.1, "model.loss.init_args.entropy.coef"),
    ("torch_dtype", "bfloat16", "model.policy.dtype"),
    ("gradient_checkpointing", True, "model.policy.gradient_checkpointing"),
])
def test_a_setting_in_its_old_place_names_its_new_one(capsys, tmp_path, tiny_model_dir, old, value, new):
    config = tiny_config(tmp_path, tiny_model_dir)
    config["model"][old] = value
    line = first_error_line(capsys, tmp_path, config)
    assert line == f"r1lit: error: model.{old} is set as {new}: move it there"
