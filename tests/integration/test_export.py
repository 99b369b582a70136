"""Hugging Face export: the HFExport callback and ``r1lit export`` give folders that transformers and vLLM load with
the trained module's weights and log-probs."""

import multiprocessing as mp
from pathlib import Path

import pytest
import torch

from helpers import build_tiny_model
from r1lit.cli.command import main
from helpers import tiny_config, write_config
from helpers import fit

KV_BYTES = 64 * 2**20


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(base model folder, run folder) of a 2-step fit with HFExport; hidden 64 / 2 heads so vLLM's CPU attention
    (head_dim >= 32) can load it."""
    root = tmp_path_factory.mktemp("export")
    model_dir = build_tiny_model(root / "base", hidden_size=64, num_heads=2)
    config = tiny_config(root, model_dir, **{"trainer.max_steps": 2})
    config["trainer"]["callbacks"].append({"class_path": "HFExport"})
    fit(write_config(root, config))
    return model_dir, root / "runs" / "tiny" / "version_0"


def module_with_checkpoint(model_dir: Path, checkpoint: Path):
    from custom_rewards import LengthReward
    from r1lit.module import GRPOModule
    from r1lit.rollout import SamplingConfig

    module = GRPOModule(str(model_dir), rewards=[LengthReward()], num_generations=2,
                        sampling=SamplingConfig(max_tokens=24))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state)
    return module.eval()


def token_logprobs(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float().log_softmax(-1)  # [1, T, V]


@pytest.mark.slow
def test_callback_and_command_exports_load_with_the_modules_logprobs(trained, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, run_dir = trained
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    main(["export", str(checkpoint), str(tmp_path / "cmd")])
    module = module_with_checkpoint(model_dir, checkpoint)
    base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = torch.tensor([[5, 17, 42, 99, 120, 7, 300, 12]])
    reference = token_logprobs(module.policy, ids)
    assert (token_logprobs(base, ids) - reference).abs().max() > 1e-4  # training moved the weights
    for folder in (run_dir / "hf" / "final", tmp_path / "cmd"):
        exported = AutoModelForCausalLM.from_pretrained(folder).eval()
        assert (token_logprobs(exported, ids) - reference).abs().max() < 1e-6, folder
        assert AutoTokenizer.from_pretrained(folder).eos_token == module.tokenizer.eos_token
        assert (folder / "generation_config.json").exists() and (folder / "model.safetensors").exists()
    assert not list((run_dir / "hf").glob("*.tmp"))


def _vllm_gap(folder: str, model_dir: str, checkpoint: str, queue) -> None:
    """Child process: max |module − vLLM| per-token log-prob gap, vLLM loading the exported folder."""
    from r1lit.rollout.vllm.launch import EngineLaunch
    from r1lit.rollout.vllm.in_process import VLLMEngine

    module = module_with_checkpoint(Path(model_dir), Path(checkpoint))
    engine = VLLMEngine(dtype="float32", kv_cache_memory_bytes=KV_BYTES, max_model_len=256)
    engine.bind(module.policy, module.tokenizer)
    engine.start(EngineLaunch(folder, max_prompt_length=200, max_tokens=56, sequences_per_call=4))
    rollout = engine.generate([[(i % 300) + 10 for i in range(150)], [5, 6, 7]], n=2, sampling=module.sampling, seed=1)
    mask = rollout.completion_mask.bool()
    queue.put(float((module.rollout_logprobs(rollout)[mask] - rollout.sampler_logprobs[mask]).abs().max()))
    engine.close()


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_loads_the_export_with_the_modules_logprobs(trained, tmp_path):
    model_dir, run_dir = trained
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_vllm_gap, args=(str(run_dir / "hf" / "final"), str(model_dir),
                                                 str(run_dir / "checkpoints" / "last.ckpt"), queue))
    child.start()
    child.join(600)
    assert child.exitcode == 0
    assert queue.get(timeout=5) < 1e-4


def test_export_errors_name_the_problem(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path / "missing.ckpt"), str(tmp_path / "out")])
    assert "no checkpoint at" in capsys.readouterr().err
    torch.save({"weights": {}}, tmp_path / "other.ckpt")
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path / "other.ckpt"), str(tmp_path / "out")])
    assert "not a Lightning checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
