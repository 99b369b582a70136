"""An engine per node, on CPU: two ``r1lit fit`` processes are two nodes of one job (Lightning's own multi-node
environment: ``--trainer.num_nodes 2 --trainer.devices 1``, ``NODE_RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``),
so each node's local rank 0 starts its own vLLM CPU server, its ranks generate there and it pushes the weights into
it. And a vLLM server with two workers (data or tensor parallel) receiving pushes. Every test has a hard timeout and
checks that no engine or trainer process is left."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import KV_BYTES, SUBPROCESS_ENV, fit_command, hashes, scalars
from test_vllm_server import alive, assert_engine_gone, engine_pids, fit, sampled_steps, server_config, write

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture
def model_dir(vllm_model_dir) -> Path:
    return vllm_model_dir


def start_nodes(tmp_path: Path, config: dict) -> list[subprocess.Popen]:
    """Node 0 and node 1 of one job, each a ``r1lit fit`` process with one training device; stderr to
    ``node<n>.err`` (a file: a pipe nobody reads could fill and stall the fit)."""
    from r1lit.rollout.vllm.engine_process import free_port

    path, port, procs = write(tmp_path, config), free_port(), []
    command = fit_command(path, "--trainer.num_nodes", "2", "--trainer.devices", "1")
    for node in (0, 1):
        env = {**SUBPROCESS_ENV, "NODE_RANK": str(node), "LOCAL_RANK": "0", "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        with open(tmp_path / f"node{node}.err", "w") as err:
            procs.append(subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                          start_new_session=True))
    return procs


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int | None]:
    """Every node's exit code; a node still running at the deadline is killed (its code is then None)."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            pass
    codes = [proc.poll() for proc in procs]
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    return codes


def stderr(tmp_path: Path, node: int) -> str:
    return (tmp_path / f"node{node}.err").read_text(errors="replace")


def assert_nothing_left(run_dir: Path, procs: list[subprocess.Popen], within: float = 30.0) -> None:
    """No trainer, and no process any server log names (API servers and engine cores), outlives the test."""
    assert all(proc.poll() is not None for proc in procs)
    assert_engine_gone(run_dir, within, pattern="vllm_server*.log")


def two_node_config(tmp_path: Path, model_dir: Path, steps: int, **engine_args) -> dict:
    config = server_config(tmp_path, model_dir, steps=steps, **engine_args)
    config["trainer"]["callbacks"].append({"class_path": "recorders.SamplerWeightsRecorder",
                                           "init_args": {"path": str(tmp_path / "sampled")}})
    return config


@pytest.mark.timeout(1200)
def test_two_nodes_each_start_an_engine_generate_on_it_and_push_into_it(tmp_path, model_dir):
    """Each node's rank generates on its own node's server (two server logs), both engines hold the policy's
    weights after every push (each rank's sampler log-probs within 1e-4 of its policy's at steps 1–3, so both
    engines, not only one), the ranks stay in sync, each engine's generation time is logged, both fits exit 0."""
    procs = start_nodes(tmp_path, two_node_config(tmp_path, model_dir, steps=3))
    codes = wait_all(procs, timeout=1000)
    assert codes == [0, 0], (codes, stderr(tmp_path, 0)[-3000:], stderr(tmp_path, 1)[-3000:])
    run_dir = tmp_path / "runs" / "tiny" / "run"
    assert sorted(p.name for p in run_dir.glob("vllm_server*.log")) == ["vllm_server_node0.log", "vllm_server_node1.log"]
    for rank in (0, 1):  # rank r is node r: its rollout came from engine r
        steps = sampled_steps(tmp_path, rank)
        assert [s["step"] for s in steps] == [1, 2, 3]
        assert max(s["current"] for s in steps) < 1e-4, (rank, steps)
    assert hashes(tmp_path / "params", 0) == hashes(tmp_path / "params", 1)
    logged = scalars(run_dir)
    assert len(logged["sampling/logp_diff/max"]) == 3 and max(logged["sampling/logp_diff/max"]) < 1e-4
    assert len(logged["time/generate/engine_0"]) == len(logged["time/generate/engine_1"]) == 3
    assert min(logged["time/generate/engine_0"] + logged["time/generate/engine_1"]) > 0
    assert_nothing_left(run_dir, procs)


@pytest.mark.timeout(1200)
def test_one_engine_dying_mid_run_fails_both_nodes_naming_it_and_its_log(tmp_path, model_dir):
    """Node 1's server is killed after step 1: node 1's rank fails at its next generate or push, and node 0's rank
    — whose own engine is fine — fails at the same point with a message naming engine 1 and its log, within the
    deadline; no process is left."""
    procs = start_nodes(tmp_path, two_node_config(tmp_path, model_dir, steps=50, request_timeout=60))
    run_dir = tmp_path / "runs" / "tiny" / "run"
    try:
        deadline = time.monotonic() + 600
        while not (tmp_path / "step").exists():
            assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, \
                (stderr(tmp_path, 0)[-3000:], stderr(tmp_path, 1)[-3000:])
            time.sleep(0.5)
        for pid in engine_pids(run_dir, "vllm_server_node1.log"):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        codes = wait_all(procs, timeout=300)
        took = time.monotonic() - killed
    finally:
        wait_all(procs, timeout=1)
    log1 = str(run_dir / "vllm_server_node1.log")
    node0, node1 = stderr(tmp_path, 0), stderr(tmp_path, 1)
    assert codes == [1, 1], (codes, node0[-3000:], node1[-3000:])
    assert took < 240, took
    # node 1: its own error (a generate or a push meeting the dead engine), naming the engine and its log
    assert ("the rollout engine VLLMServerEngine failed while" in node1
            or "the engine is not serving the pushed weights" in node1), node1[-3000:]
    # the state is read after up to FAILURE_GRACE_S for the killed server to exit: "exited with code", or "running"
    # on a machine too loaded for it to have exited by then
    assert "vLLM engine 1 of 2 (node 1, the server at" in node1 and "The engine process (" in node1, node1[-3000:]
    assert f"logs to {log1}; it ends:" in node1, node1[-3000:]
    # node 0: stopped by engine 1's failure, with engine 1's message and log
    assert "vLLM engine 1 of 2 (node 1, the server at" in node0 and "failed on rank 1 while" in node0, node0[-3000:]
    assert f"logs to {log1}; it ends:" in node0, node0[-3000:]
    assert_nothing_left(run_dir, procs)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("parallel", [
    {"data_parallel_size": 2},
    # vLLM's CPU build binds each TP worker's threads to a NUMA node of its own unless told which cores to use
    # ("Not enough allowed NUMA nodes to bind threads of 2 local CPUWorkers", vllm/utils/ompmultiprocessing.py)
    {"tensor_parallel_size": 2, "env": {"VLLM_CPU_OMP_THREADS_BIND": "0|1"}},
], ids=["dp2", "tp2"])
def test_a_server_with_two_workers_takes_every_push(tmp_path, model_dir, parallel):
    """vLLM's CPU server started with two workers (``--data-parallel-size 2`` or ``--tensor-parallel-size 2``): the
    trainer finds 2 workers (``GET /get_world_size``; start-up refuses any other count), its transfer group is
    1 + 2, and after every push the engine's log-probs are the policy's."""
    done = fit(tmp_path, server_config(tmp_path, model_dir, steps=2, **parallel), timeout=800)
    run_dir = tmp_path / "runs" / "tiny" / "run"
    try:
        assert done.returncode == 0, done.stderr[-4000:]
        diffs = scalars(run_dir)["sampling/logp_diff/max"]
        assert len(diffs) == 2 and max(diffs) < 1e-4, diffs
    finally:
        assert_engine_gone(run_dir)


@pytest.mark.timeout(1200)
def test_two_nodes_attach_to_one_server_each_by_a_list_of_urls(tmp_path, model_dir):
    """``base_url: [url_0, url_1]``: node n's rank generates on and pushes into the n-th server (each rank's sampler
    log-probs match its policy's after every push), and both servers are left running."""
    from r1lit.rollout.vllm.engine_process import EngineProcess, child_environment, free_port

    servers, urls = [], []
    for node in (0, 1):
        port = free_port()
        args = ["--model", str(model_dir), "--dtype", "float32", "--max-model-len", "512", "--enforce-eager",
                "--kv-cache-memory-bytes", str(KV_BYTES), "--logprobs-mode", "processed_logprobs",
                "--worker-extension-cls", "r1lit.rollout.vllm.worker.R1LitWorkerExtension",
                "--max-num-batched-tokens", "16384", "--host", "127.0.0.1", "--port", str(port),
                "--weight-transfer-config", '{"backend": "r1lit_gloo"}']
        servers.append(EngineProcess(args, child_environment({}, None), tmp_path / f"user_server{node}.log"))
        urls.append(f"http://127.0.0.1:{port}")
    procs: list[subprocess.Popen] = []
    try:
        for server, url in zip(servers, urls):
            server.wait_ready(url, timeout=400)
        procs = start_nodes(tmp_path, two_node_config(tmp_path, model_dir, steps=2, base_url=urls))
        codes = wait_all(procs, timeout=600)
        assert codes == [0, 0], (codes, stderr(tmp_path, 0)[-3000:], stderr(tmp_path, 1)[-3000:])
        for rank in (0, 1):
            steps = sampled_steps(tmp_path, rank)
            assert [s["step"] for s in steps] == [1, 2] and max(s["current"] for s in steps) < 1e-4, (rank, steps)
        assert all(server.proc.poll() is None for server in servers)  # attached: never stopped by the trainer
        for node, server in enumerate(servers):  # each server took its node's pushes (vLLM logs each cache reset)
            assert server.log_path.read_text(errors="replace").count("Resetting prefix cache") == 3, node
    finally:
        wait_all(procs, timeout=1)
        for server in servers:
            server.stop()
