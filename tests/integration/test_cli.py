"""The ``r1lit`` command end to end on a tiny model, the shipped configs, and the errors bad input gets."""

import math
from pathlib import Path

import pytest
import torch

from r1lit.cli.command import R1LitCLI, main
from r1lit.data import MathDataModule
from r1lit.module import GRPOModule
from helpers import ROOT, fit, scalars, tiny_config, write_config

EXPECTED_TAGS = [
    "reward", "reward_std", "frac_reward_zero_std", "kl", "loss", "lr", "step_time", "grad_norm",
    "completions/mean_length", "completions/clipped_ratio", "clip_ratio/region_mean",
    "time/generate", "time/score", "time/optimise",
    "entropy", "num_tokens", "completions/min_length", "completions/max_length", "completions/mean_terminated_length",
    *(f"rewards/{name}/{stat}" for name in ("accuracy", "format", "length") for stat in ("mean", "std")),
]


@pytest.mark.slow
def test_three_step_fit_through_the_console_script(tmp_path, tiny_model_dir):
    """The README's path on a tiny model: finite loss, changed weights, every promised tag, a checkpoint."""
    config = write_config(tmp_path, tiny_config(tmp_path, tiny_model_dir))
    result = fit(config)
    assert "Question:" in result.stdout and "--- answer 3" in result.stdout  # the seed-style group printing

    run_dir = tmp_path / "runs" / "tiny" / "version_0"
    logged = scalars(run_dir)
    missing = [tag for tag in EXPECTED_TAGS if tag not in logged]
    assert not missing, f"missing TensorBoard tags: {missing}"
    assert len(logged["reward"]) == 3
    assert all(math.isfinite(v) for v in logged["loss"] + logged["kl"])
    assert logged["lr"][0] == pytest.approx(1e-3)

    checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert any(c.name == "last.ckpt" for c in checkpoints), checkpoints
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 3
    assert not any(k.startswith("_ref") or k.startswith("ref") for k in state["state_dict"])  # the reference is not saved
    from transformers import AutoModelForCausalLM

    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    trained = {k.removeprefix("policy."): v for k, v in state["state_dict"].items()}
    changed = [k for k, v in initial.items() if k in trained and not torch.equal(v, trained[k])]
    assert len(changed) > len(initial) // 2, "training did not change the weights"


class _ParseOnly(R1LitCLI):
    """Parses and checks a config against the real signatures without loading any model."""

    def instantiate_classes(self) -> None:
        pass


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_parses(path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the GPU recipes are checked as on their machines
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    cli = _ParseOnly(GRPOModule, MathDataModule, run=False, args=["--config", str(path)])
    assert cli.config.model.num_generations >= 2
    assert cli.config.data.tokenizer == cli.config.model.model_name_or_path  # written once, linked


def test_help_explains_arguments_from_docstrings(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "G, completions sampled per problem" in text
    assert "prompts per training step per rank" in text
    for option in ("dynamic_sampling", "--model.policy.gradient_checkpointing", "val_pass_at_k", "difficulty_filter",
                   "val_source"):
        assert option in text, option
    flat = " ".join(text.split())  # argparse wraps the help lines
    assert "drop groups whose rewards are all equal" in flat and "how the policy is loaded and run" in flat


def _expect_parse_error(capsys, tmp_path, config) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(write_config(tmp_path, config))])
    assert exit_info.value.code != 0
    return capsys.readouterr().err


def test_batch_not_divisible_names_the_fix(capsys, tmp_path, tiny_model_dir):
    err = _expect_parse_error(capsys, tmp_path, tiny_config(tmp_path, tiny_model_dir, **{"model.micro_batch_size": 3}))
    assert "model.micro_batch_size=3 does not divide" in err and "[1, 2, 4, 8]" in err


def test_unknown_reward_class_is_a_parse_error(capsys, tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, tiny_model_dir)
    config["model"]["rewards"] = [{"class_path": "AccuracyRewardd"}]
    err = _expect_parse_error(capsys, tmp_path, config)
    assert "AccuracyRewardd" in err


def test_misspelt_reward_argument_is_a_parse_error(capsys, tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, tiny_model_dir)
    config["model"]["rewards"] = [{"class_path": "FormatReward", "init_args": {"partial_credits": 0.5}}]
    assert "partial_credits" in _expect_parse_error(capsys, tmp_path, config)


def test_a_raising_reward_stops_with_its_name_and_traceback(capsys, tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, tiny_model_dir)
    config["model"]["rewards"] = [{"class_path": "custom_rewards.BrokenReward"}]
    err = _expect_parse_error(capsys, tmp_path, config)
    assert "r1lit: error: reward 'broken' (BrokenReward) raised KeyError" in err and "model.rewards" in err
    assert 'raise KeyError("solution")' in err  # the reward's own traceback, to find the bug


def test_missing_dataset_field_is_one_clear_error(capsys, tmp_path, tiny_model_dir):
    data = tmp_path / "problems.jsonl"
    data.write_text('{"question": "1+1?", "final": "2"}\n')
    config = tiny_config(tmp_path, tiny_model_dir)
    config["data"]["source"] = {"class_path": "DatasetSource", "init_args": {"path": str(data), "preset": "math"}}
    err = _expect_parse_error(capsys, tmp_path, config)
    assert "r1lit: error:" in err and "no column 'problem'" in err and "problem_field" in err
    assert "Traceback" not in err


def test_empty_dataset_is_one_clear_error(capsys, tmp_path, tiny_model_dir):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    config = tiny_config(tmp_path, tiny_model_dir)
    config["data"]["source"] = {"class_path": "DatasetSource", "init_args": {"path": str(data), "preset": "math"}}
    assert "is empty" in _expect_parse_error(capsys, tmp_path, config)


def test_validate_subcommand_logs_validation_reward(capsys, tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, tiny_model_dir, **{"trainer.limit_val_batches": 1.0, "data.val_size": 4})
    main(["validate", "--config", str(write_config(tmp_path, config))])
    assert "val/reward" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["qwen0.5b.yaml", "qwen1.5b.yaml"])
def test_qwen_recipes_generate_with_vllm_on_a_reserved_gpu(name, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # parsed as on their GPU machines
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # devices: 1 trains, the second is reserved
    cli = _ParseOnly(GRPOModule, MathDataModule, run=False, args=["--config", str(ROOT / "configs" / name)])
    engine = cli.config.model.engine
    assert engine.class_path.endswith("VLLMServerEngine") and engine.init_args.base_url is None
    assert engine.init_args.gpu_memory_utilization == 0.7 and engine.init_args.dtype == "bfloat16"
    assert engine.init_args.enforce_eager is False  # CUDA graphs: the recipe decodes with vLLM compiled
    sets = {name: source.init_args.path for name, source in cli.config.data.val_sources.items()}
    assert sets == {"math500": "HuggingFaceH4/MATH-500", "gsm8k": "openai/gsm8k"}  # SimpleRL-Zoo's table, by hub id
    assert cli.config.data.lookahead is cli.config.model.async_generation  # linked, written once


def test_multinode_recipe_spans_nodes_under_deepspeed(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    cli = _ParseOnly(GRPOModule, MathDataModule, run=False, args=["--config", str(ROOT / "configs" / "qwen1.5b-multinode.yaml")])
    trainer, engine = cli.config.trainer, cli.config.model.engine.init_args
    assert trainer.num_nodes == 2 and trainer.devices == 7
    assert engine.engine_per_node is True and engine.data_parallel_size * engine.tensor_parallel_size == 8 - 7
    assert trainer.strategy.class_path.endswith("DeepSpeedStrategy")
    assert Path(ROOT / trainer.strategy.init_args.config).is_file()


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_deepspeed_configs_load_into_the_strategy(path):
    from lightning.pytorch.strategies import DeepSpeedStrategy

    strategy = DeepSpeedStrategy(config=str(path))
    stage = strategy.config["zero_optimization"]["stage"]
    assert stage in (2, 3) and path.name.startswith(f"zero{stage}")
    assert "gradient_clipping" not in strategy.config  # model.max_grad_norm is the one place clipping is set


@pytest.mark.parametrize("listed", [False, True])
def test_training_health_is_added_once_and_a_listed_one_keeps_its_settings(tmp_path, tiny_model_dir, listed):
    from r1lit.callbacks import TrainingHealth

    config = tiny_config(tmp_path, tiny_model_dir)
    if listed:
        config["trainer"]["callbacks"].append({"class_path": "TrainingHealth", "init_args": {"stop_on": ["truncated"]}})
    cli = R1LitCLI(GRPOModule, MathDataModule, run=False, args=["--config", str(write_config(tmp_path, config))])
    (health,) = [c for c in cli.trainer.callbacks if isinstance(c, TrainingHealth)]
    assert health.stop_on == (("truncated",) if listed else ("frozen_engine",))


@pytest.mark.parametrize("listed", [False, True])
def test_host_memory_callback_runs_only_when_a_config_lists_it(tmp_path, tiny_model_dir, listed):
    from r1lit.callbacks import KeepFreedHostMemory

    config = tiny_config(tmp_path, tiny_model_dir)
    if listed:
        config["trainer"]["callbacks"].append({"class_path": "KeepFreedHostMemory"})
    cli = R1LitCLI(GRPOModule, MathDataModule, run=False, args=["--config", str(write_config(tmp_path, config))])
    kept = [c for c in cli.trainer.callbacks if isinstance(c, KeepFreedHostMemory)]
    assert len(kept) == int(listed) and all(c.enabled for c in kept)


@pytest.mark.parametrize("name", ["qwen0.5b.yaml", "qwen1.5b.yaml", "qwen1.5b-multinode.yaml"])
def test_recipes_find_their_deepspeed_json_from_any_working_directory(name, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.chdir(tmp_path)  # not the repository: a relative path would name nothing here
    cli = _ParseOnly(GRPOModule, MathDataModule, run=False, args=["--config", str(ROOT / "configs" / name)])
    path = Path(cli.config.trainer.strategy.init_args.config)
    assert path.is_absolute() and path.is_file() and path.parent == ROOT / "configs" / "deepspeed"


def test_a_deepspeed_json_next_to_the_yaml_is_found(monkeypatch, tmp_path):
    from r1lit.training.deepspeed import resolve_deepspeed_json

    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "ds.json").write_text("{}")
    monkeypatch.chdir(ROOT)
    assert resolve_deepspeed_json("ds.json", [str(tmp_path / "recipe" / "r.yaml")]) == str(tmp_path / "recipe" / "ds.json")
    assert resolve_deepspeed_json("missing.json", [str(tmp_path / "recipe" / "r.yaml")]) == "missing.json"
