"""vLLM engines take no sampling defaults from the checkpoint's generation_config.json (trl#5783): vLLM's
``generation_config="auto"`` would turn its flags into request defaults and a server-wide max_new_tokens."""

import json

import pytest

pytestmark = pytest.mark.vllm


@pytest.mark.parametrize("flags", [
    {"top_k": 3}, {"temperature": 0.2}, {"min_p": 0.3}, {"max_new_tokens": 4}, {"repetition_penalty": 1.7},
    {"top_p": 0.5, "temperature": 0.6},
], ids=lambda f: "+".join(f))
def test_the_engines_generation_config_setting_ignores_the_checkpoint(vllm_model_dir, tmp_path, flags):
    """Guards the setting the in-process engine (LLM(generation_config=…)) and the server (--generation-config)
    are given: vLLM's own model config built with it has no default sampling parameters, while "auto" has them."""
    pytest.importorskip("vllm")
    import shutil

    from vllm.engine.arg_utils import EngineArgs

    from r1lit.rollout.vllm.base import GENERATION_CONFIG

    folder = tmp_path / "model"
    shutil.copytree(vllm_model_dir, folder)
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, **flags}))
    inherited = EngineArgs(model=str(folder), generation_config="auto").create_model_config().get_diff_sampling_param()
    assert inherited  # the checkpoint's flags are there to be ignored
    ours = EngineArgs(model=str(folder), generation_config=GENERATION_CONFIG).create_model_config()
    assert ours.get_diff_sampling_param() == {}
