"""A module built in Python with a vLLM engine and no ``VLLMEngineCallback`` stops at setup with the fix, before
any model work (the ``r1lit`` command adds the callback itself: tests/unit/cli/test_command.py)."""

import lightning as L
import pytest

from custom_rewards import LengthReward
from r1lit.data import ArithmeticSource, MathDataModule
from r1lit.errors import ConfigError
from r1lit.module import GRPOModule
from r1lit.rollout import SamplingConfig
from r1lit.rollout.vllm.server import VLLMServerEngine


def test_vllm_engine_without_its_callback_names_the_fix(tiny_model_dir, tmp_path):
    module = GRPOModule(str(tiny_model_dir), rewards=[LengthReward()], engine=VLLMServerEngine(dtype="float32"),
                        sampling=SamplingConfig(max_tokens=8), num_generations=2, micro_batch_size=4)
    data = MathDataModule(ArithmeticSource(num_problems=8), tokenizer=str(tiny_model_dir), batch_size=2, check_gold=False)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"callbacks=\[VLLMEngineCallback\(\)\]"):
        trainer.fit(module, data)
