"""What the ``r1lit`` command adds to a config: the vLLM engine callback exactly when ``model.engine`` is a vLLM
engine (once, whether or not the config lists it), and the one-step-off setting passed on to the data."""

import pytest

from helpers import tiny_config, write_config
from r1lit.callbacks import VLLMEngineCallback
from r1lit.cli.command import R1LitCLI
from r1lit.data import MathDataModule
from r1lit.module import GRPOModule


def built(tmp_path, config) -> R1LitCLI:
    return R1LitCLI(GRPOModule, MathDataModule, run=False, args=["--config", str(write_config(tmp_path, config))])


@pytest.mark.parametrize("listed", [None, "VLLMRollout", "VLLMEngineCallback"])
def test_a_vllm_engine_gets_exactly_one_engine_callback(tmp_path, tiny_model_dir, listed):
    """Guards the pairing rule a config had to get right by hand: added when missing, never twice, and a listed
    one (either name) keeps its settings."""
    config = tiny_config(tmp_path, tiny_model_dir)
    config["model"]["engine"] = {"class_path": "VLLMServerEngine", "init_args": {"dtype": "float32"}}
    if listed:
        config["trainer"]["callbacks"].append({"class_path": listed, "init_args": {"sync_every_n_steps": 2}})
    engines = [c for c in built(tmp_path, config).trainer.callbacks if isinstance(c, VLLMEngineCallback)]
    assert len(engines) == 1
    assert engines[0].sync_every_n_steps == (2 if listed else 1)


def test_the_policys_own_generate_gets_no_engine_callback(tmp_path, tiny_model_dir):
    cli = built(tmp_path, tiny_config(tmp_path, tiny_model_dir))
    assert not any(isinstance(c, VLLMEngineCallback) for c in cli.trainer.callbacks)
    assert cli.datamodule.lookahead is False


def test_async_generation_reaches_the_data_as_lookahead(tmp_path, tiny_model_dir):
    """The setting is written once (model.async_generation) and linked to data.lookahead."""
    config = tiny_config(tmp_path, tiny_model_dir, **{"model.async_generation": True})
    config["model"]["engine"] = {"class_path": "VLLMServerEngine", "init_args": {"dtype": "float32"}}
    assert built(tmp_path, config).datamodule.lookahead is True
