"""The seed's topology on CPU: vLLM in its own process (``VLLMServerEngine``), attached by ``base_url``, one
in-process engine per rank (colocate through vLLM's external launcher), and a seeded call larger than vLLM's
prefill budget. Every test that starts an engine has a hard timeout and checks that no engine process is left."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from helpers import build_tiny_model
from helpers import SUBPROCESS_ENV, fit_command, scalars, tiny_config
from helpers import hashes
from helpers import KV_BYTES

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
LONG = {"class_path": "ArithmeticSource", "init_args": {"num_problems": 32, "num_operands": 20, "max_operand": 99}}


@pytest.fixture
def model_dir(vllm_model_dir) -> Path:
    return vllm_model_dir


def server_config(tmp_path: Path, model_dir: Path, steps: int, engine: str = "VLLMServerEngine", devices: int = 1,
                  **engine_args) -> dict:
    """Long prompts (> 128 tokens: one KV block, so a stale prefix cache would show), float32, weights pushed
    after every step, a weight hash per rank and step."""
    config = tiny_config(tmp_path, model_dir, **{"trainer.max_steps": steps, "trainer.devices": devices})
    config["data"]["source"] = LONG
    config["data"]["max_prompt_length"] = 256
    config["model"]["engine"] = {"class_path": engine,
                                 "init_args": {"dtype": "float32", "kv_cache_memory_bytes": KV_BYTES, **engine_args}}
    config["model"]["sampling"]["temperature"] = 0.9
    config["trainer"]["logger"]["init_args"]["version"] = "run"
    config["trainer"]["callbacks"] = [  # the r1lit command adds the VLLMEngineCallback
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True, "every_n_train_steps": 1}},
        {"class_path": "recorders.ParamHashRecorder", "init_args": {"path": str(tmp_path / "params")}},
        {"class_path": "fault_helpers.StepFile", "init_args": {"path": str(tmp_path / "step")}},
    ]
    return config


def write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fit(tmp_path: Path, config: dict, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(fit_command(write(tmp_path, config), *extra), cwd=tmp_path, env=SUBPROCESS_ENV,
                          capture_output=True, text=True, timeout=timeout)


def record_sampler_weights(tmp_path: Path, config: dict) -> dict:
    """Train at lr 5e-3 (far enough to tell one update's weights from the next) with ``SamplerWeightsRecorder``:
    which weights sampled each step's rollout (``sampled_steps``)."""
    config["model"]["optimizer"]["init_args"]["lr"] = 5e-3
    config["trainer"]["callbacks"].append({"class_path": "recorders.SamplerWeightsRecorder",
                                           "init_args": {"path": str(tmp_path / "sampled")}})
    return config


def sampled_steps(tmp_path: Path, rank: int = 0) -> list[dict]:
    """``SamplerWeightsRecorder``'s lines for one rank: step, and the sampler's gap to the weights before this update
    (``current``) and before the previous one (``previous``)."""
    return [json.loads(line) for line in Path(f"{tmp_path / 'sampled'}.rank{rank}").read_text().splitlines()]


def engine_pids(run_dir: Path, pattern: str = "vllm_server.log") -> set[int]:
    """Every process id the server logs matching ``pattern`` name (vLLM's API server and its engine core)."""
    return {int(p) for log in run_dir.glob(pattern) for p in re.findall(r"pid=(\d+)\)", log.read_text(errors="replace"))}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie is gone, only not yet reaped
    except OSError:
        return False


def assert_engine_gone(run_dir: Path, within: float = 20.0, pattern: str = "vllm_server.log") -> None:
    pids = engine_pids(run_dir, pattern)
    assert pids, "the server log names no process: was the engine started in its own process?"
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [p for p in pids if alive(p)]
    for pid in left:  # the test fails, but leaves nothing behind
        os.kill(pid, signal.SIGKILL)
    assert not left, f"engine processes outlived the trainer: {left} of {pids}"


def start_training(tmp_path: Path, model_dir: Path) -> subprocess.Popen:
    """A long fit with the process engine, returned once its first step is done (stderr piped)."""
    config = server_config(tmp_path, model_dir, steps=50)
    proc = subprocess.Popen(fit_command(write(tmp_path, config)), cwd=tmp_path, env=SUBPROCESS_ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 400
    while not (tmp_path / "step").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"training did not start: {proc.stderr.read()[-3000:]}")
        time.sleep(0.5)
    return proc


def test_long_prompts_are_longer_than_one_kv_block(model_dir):
    """The log-prob checks below only catch a stale prefix cache if prompts span more than one 128-token block."""
    from r1lit.data import MathDataModule
    from r1lit.data.tasks.arithmetic import ArithmeticSource

    data = MathDataModule(source=ArithmeticSource(**LONG["init_args"]), tokenizer=str(model_dir), max_prompt_length=256)
    data.setup("fit")
    assert min(len(e["prompt_ids"]) for e in data.train_set) > 128


def test_reserved_engine_on_two_ranks_trains_in_sync_and_leaves_no_process(tmp_path, model_dir):
    """The seed's topology on CPU: 2 DDP ranks train, rank 0 starts vLLM in its own process, both ranks send it
    their prompts, rank 0 pushes after every step. Guards the old rank-0 in-process engine, which deadlocked vLLM's
    group creation with the other rank waiting in a barrier."""
    done = fit(tmp_path, server_config(tmp_path, model_dir, steps=3, devices=2), timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    run_dir = tmp_path / "runs" / "tiny" / "run"
    rank0, rank1 = hashes(tmp_path / "params", 0), hashes(tmp_path / "params", 1)
    assert sorted(rank0) == sorted(rank1) == [1, 2, 3] and rank0 == rank1, "the ranks hold different weights"
    logged = scalars(run_dir)
    diffs = logged["sampling/logp_diff/max"]
    assert len(diffs) == 3 and max(diffs) < 1e-4, diffs  # the engine had the policy's weights at every step
    assert len(logged["time/weight_push"]) == 3
    assert_engine_gone(run_dir)


def test_one_step_off_on_two_ranks_samples_each_rollout_with_the_weights_one_update_older(tmp_path, model_dir):
    """async_generation on the real process engine, 2 ranks: step k ≥ 1 trains on a rollout whose sampler log-probs
    are those of the weights before step k − 1 (fp32: within 1e-4), not those before step k; a push waits for
    both ranks' generation in flight; staleness 1 is logged; no engine process is left."""
    config = record_sampler_weights(tmp_path, server_config(tmp_path, model_dir, steps=3, devices=2))
    config["model"]["async_generation"] = True
    done = fit(tmp_path, config, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    run_dir = tmp_path / "runs" / "tiny" / "run"
    for rank in (0, 1):
        steps = sampled_steps(tmp_path, rank)
        assert [s["step"] for s in steps] == [1, 2, 3]  # global_step after each update
        assert steps[0]["current"] < 1e-4  # the first rollout is generated in the foreground
        for step in steps[1:]:
            assert step["previous"] < 1e-4 < step["current"], (rank, step)
    assert scalars(run_dir)["rollout/staleness"] == [0.0, 1.0, 1.0]
    assert_engine_gone(run_dir)


def test_resume_resyncs_the_process_engine(tmp_path, model_dir):
    """After ``--ckpt_path last`` the new engine process starts from the base weights; the push at train start
    must give it the restored ones, or step 3's log-probs would not match."""
    first = fit(tmp_path, server_config(tmp_path, model_dir, steps=2))
    assert first.returncode == 0, first.stderr[-4000:]
    run_dir = tmp_path / "runs" / "tiny" / "run"
    resumed = fit(tmp_path, server_config(tmp_path, model_dir, steps=3), "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    diffs = scalars(run_dir)["sampling/logp_diff/max"]
    assert len(diffs) == 3 and max(diffs) < 1e-4, diffs
    assert_engine_gone(run_dir)


def test_compiled_server_engine_samples_with_every_pushed_update(tmp_path, model_dir):
    """The Qwen recipes' engine kind: vLLM in its own process with its model compiled (``enforce_eager: false``;
    inductor on this CPU build, CUDA graphs on a GPU). Every push must reach the compiled model: steps 2 and 3 sample
    with weights pushed after steps 1 and 2, and their log-probs match the trainer's."""
    config = record_sampler_weights(tmp_path, server_config(tmp_path, model_dir, steps=3, enforce_eager=False))
    done = fit(tmp_path, config, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    run_dir = tmp_path / "runs" / "tiny" / "run"
    log = "\n".join(p.read_text(errors="replace") for p in run_dir.rglob("vllm_server.log"))
    assert "enforce_eager=False" in log and "'backend': 'inductor'" in log, log[-2000:]  # compiled, not eager
    steps = sampled_steps(tmp_path)
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert steps[0]["current"] < 1e-4
    for step in steps[1:]:  # sampled with the weights pushed after the last update, not those before it
        assert step["current"] < 1e-4 < step["previous"], step
    assert_engine_gone(run_dir)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_engine_process_ends_with_a_stopped_or_killed_trainer(tmp_path, model_dir, how):
    """SIGTERM: the graceful stop ends the fit and teardown stops the engine. SIGKILL: nothing in the trainer
    runs, so the engine's watchdog must notice its parent is gone and end its process group."""
    proc = start_training(tmp_path, model_dir)
    try:
        proc.send_signal(getattr(signal, how))
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_dir = tmp_path / "runs" / "tiny" / "run"
    assert code == (0 if how == "SIGTERM" else -signal.SIGKILL)
    assert_engine_gone(run_dir)


def test_attached_server_is_checked_used_and_left_running(tmp_path, model_dir, tmp_path_factory):
    """A server the user runs (here: started by the test) is attached by base_url: the fit trains and pushes
    weights into it (the log-probs match after every push), leaves it running, and a fit of another model is
    refused with a message naming both models."""
    from r1lit.rollout.vllm.engine_process import EngineProcess, child_environment, free_port, request

    port = free_port()
    args = ["--model", str(model_dir), "--dtype", "float32", "--max-model-len", "512", "--enforce-eager",
            "--kv-cache-memory-bytes", str(KV_BYTES), "--logprobs-mode", "processed_logprobs",
            "--worker-extension-cls", "r1lit.rollout.vllm.worker.R1LitWorkerExtension",
            "--max-num-batched-tokens", "16384", "--host", "127.0.0.1", "--port", str(port),
            "--weight-transfer-config", '{"backend": "r1lit_gloo"}']
    server = EngineProcess(args, child_environment({}, None), tmp_path / "user_server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_ready(url, timeout=240)
        done = fit(tmp_path, server_config(tmp_path, model_dir, steps=2, base_url=url))
        assert done.returncode == 0, done.stderr[-4000:]
        diffs = scalars(tmp_path / "runs" / "tiny" / "run")["sampling/logp_diff/max"]
        assert len(diffs) == 2 and max(diffs) < 1e-4, diffs
        assert server.proc.poll() is None and request("GET", f"{url}/health") is None  # still serving

        other = build_tiny_model(tmp_path_factory.mktemp("other-model"), seed=1, hidden_size=64, num_heads=2)
        refused = fit(tmp_path / "runs", server_config(tmp_path / "runs", other, steps=1, base_url=url))
        assert refused.returncode == 1
        assert f"the vLLM server at {url} serves {str(model_dir)!r}, but the policy is {str(other)!r}" in refused.stderr
        assert server.proc.poll() is None
    finally:
        server.stop()


def test_colocated_engines_on_two_ranks(tmp_path, model_dir):
    """One in-process engine per rank through vLLM's external launcher, built on all ranks together: both ranks
    train in sync and each engine keeps its rank's weights."""
    done = fit(tmp_path, server_config(tmp_path, model_dir, steps=2, engine="VLLMEngine", devices=2), timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    rank0, rank1 = hashes(tmp_path / "params", 0), hashes(tmp_path / "params", 1)
    assert sorted(rank0) == [1, 2] and rank0 == rank1
    diffs = scalars(tmp_path / "runs" / "tiny" / "run")["sampling/logp_diff/max"]
    assert len(diffs) == 2 and max(diffs) < 1e-4, diffs


def _big_call(model_dir: str, sequences_per_call: int, queue) -> None:
    """Child process: one seeded call of 16 prompts × 8 samples of 60+ tokens, twice."""
    from r1lit.module import GRPOModule
    from r1lit.rollout import SamplingConfig
    from r1lit.rollout.vllm.launch import EngineLaunch
    from r1lit.rollout.vllm.in_process import VLLMEngine
    from custom_rewards import LengthReward

    module = GRPOModule(model_dir, rewards=[LengthReward()], num_generations=8, sampling=SamplingConfig(max_tokens=8))
    engine = VLLMEngine(dtype="float32", kv_cache_memory_bytes=KV_BYTES)
    engine.bind(module.policy, module.tokenizer)
    engine.start(EngineLaunch(model_dir, max_prompt_length=64, max_tokens=8, sequences_per_call=sequences_per_call))
    prompts = [[(i * 7 + j) % 300 + 10 for j in range(60 + i % 4)] for i in range(16)]
    first = engine.generate(prompts, n=8, sampling=module.sampling, seed=11).completion_ids.tolist()
    again = engine.generate(prompts, n=8, sampling=module.sampling, seed=11).completion_ids.tolist()
    queue.put((engine.budget, first, again))
    engine.close()


@pytest.mark.parametrize("sized_for", [128, 8])
def test_seeded_call_larger_than_the_default_prefill_budget(model_dir, sized_for):
    """16 × 8 samples of 60–63-token prompts (≈ 8,000 prefill tokens) crashed vLLM's CPU sampler at its default
    budget of 4,096 ("CPU Generator does not use offset"). Sized for the call (128) it runs in one piece; sized
    for a smaller one (8) the call is cut into pieces that fit. Either way it runs and the same seed repeats."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_big_call, args=(str(model_dir), sized_for, queue))
    child.start()
    try:
        budget, first, again = queue.get(timeout=240)
    finally:
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    assert budget[0] >= (8320 if sized_for == 128 else 4096)
    assert len(first) == 128 and first == again


def test_engine_that_cannot_start_fails_both_ranks_with_its_log(tmp_path, model_dir):
    """A server that exits while starting (a bad setting) ends the fit on every rank with the exit code and the
    tail of its log, instead of leaving rank 1 waiting in a barrier."""
    done = fit(tmp_path, server_config(tmp_path, model_dir, steps=2, devices=2, dtype="float99"), timeout=300)
    assert done.returncode == 1
    assert "the vLLM engine process exited with code" in done.stderr and "float99" in done.stderr


def test_engine_that_does_not_answer_in_time_is_stopped(tmp_path, model_dir):
    done = fit(tmp_path, server_config(tmp_path, model_dir, steps=2, startup_timeout=0.5), timeout=300)
    assert done.returncode == 1
    assert "did not answer at" in done.stderr and "within 0 s (VLLMServerEngine startup_timeout); it was stopped" in done.stderr
    assert_engine_gone(tmp_path / "runs" / "tiny" / "run", within=5)


def test_engine_process_dying_mid_run_names_its_log_and_the_checkpoint(tmp_path, model_dir):
    """The engine killed between steps (out of memory, a crash): the next generate fails with where the engine
    logged, and the run says which checkpoint to resume from."""
    proc = start_training(tmp_path, model_dir)
    try:
        for pid in engine_pids(tmp_path / "runs" / "tiny" / "run"):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    # whichever call meets the dead engine first: a generate, or the push (then it says the weights did not arrive)
    assert ("the rollout engine VLLMServerEngine failed while" in err
            or "the engine is not serving the pushed weights" in err), err[-3000:]
    assert "The engine process (" in err and "vllm_server.log; it ends:" in err, err[-3000:]
    assert "r1lit: the last checkpoint is" in err


def test_a_push_that_hangs_stops_the_run_within_its_deadline_naming_the_engine(tmp_path, model_dir):
    """The push is broken on purpose (the engine never answers the update round trip): the run must stop within
    request_timeout with an error saying the engine is not serving the pushed weights and showing its log, and
    leave no process behind."""
    config = server_config(tmp_path, model_dir, steps=2, request_timeout=20,
                           transport={"class_path": "broken_transport.HangingPushTransport"})
    start = time.monotonic()
    done = fit(tmp_path, config, timeout=600)
    took = time.monotonic() - start
    run_dir = tmp_path / "runs" / "tiny" / "run"
    assert done.returncode == 1, done.stderr[-4000:]
    assert "the weight push to the vLLM server at http://127.0.0.1:" in done.stderr
    assert "did not finish within 20 s (VLLMServerEngine request_timeout): the engine is not serving the pushed " \
           "weights" in done.stderr
    assert f"logs to {run_dir / 'vllm_server.log'}" in done.stderr
    assert took < 400, took  # start-up and one 20 s deadline, not a hang
    assert_engine_gone(run_dir)


@pytest.mark.deepspeed
def test_zero3_ranks_gather_every_parameter_for_the_push(tmp_path, model_dir):
    """ZeRO-3 on 2 CPU ranks (DeepSpeed over gloo): each push gathers every parameter on both ranks and rank 0 sends
    them through the gloo transfer; the engine's log-probs match the trainer's after every push."""
    config = server_config(tmp_path, model_dir, steps=2, devices=2)
    config["trainer"]["strategy"] = {"class_path": "ds_cpu.CPUDeepSpeedStrategy", "init_args": {"stage": 3}}
    config["model"]["loss"] = {"class_path": "GRPOLoss"}  # no reference model: DeepSpeed does not wrap it
    config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"]
                                      if "ModelCheckpoint" not in c["class_path"]]
    done = fit(tmp_path, config, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    run_dir = tmp_path / "runs" / "tiny" / "run"
    diffs = scalars(run_dir)["sampling/logp_diff/max"]
    assert len(diffs) == 2 and max(diffs) < 1e-4, diffs
    assert_engine_gone(run_dir)
