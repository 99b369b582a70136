"""Two ranks over gloo, as two nodes with an engine each: an engine that fails to start, or fails while generating
or taking weights, fails both ranks with that engine's message; when all goes well every rank learns every engine's
address and each engine's slowest generation time. (The engines' own processes are stood in for: the real ones run
in tests/integration/test_vllm_multi_engine.py.)"""

from __future__ import annotations

import multiprocessing as mp
import os
from datetime import timedelta

import pytest

from r1lit.rollout.vllm.engine_process import free_port

LOG = "/runs/tiny/run/vllm_server_node{}.log"


def _info(node: int) -> dict:
    return {"local_url": f"http://127.0.0.1:{9000 + node}", "remote_url": f"http://node{node}:{9000 + node}",
            "log_path": LOG.format(node), "model_name": "r1lit-policy", "budget": [8192, 64], "on_cpu": True,
            "workers": 2}


def _rank(rank: int, port: int, scenario: str, queue) -> None:
    """One rank = one node (node_rank = rank, one training device each)."""
    import torch.distributed as dist

    from r1lit.errors import EngineError
    from r1lit.rollout.agreement import agree
    from r1lit.rollout.vllm.launch import EngineLaunch
    from r1lit.rollout.vllm.server import VLLMServerEngine

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    engine = VLLMServerEngine(request_timeout=30)

    def bring_up(launch, site):
        if scenario == "start" and site.index == 1:
            raise EngineError(f"the vLLM engine process exited with code 1 while starting: float99 (its log: {LOG.format(1)})")
        return _info(site.index)

    engine._bring_up = bring_up
    try:
        engine.start(EngineLaunch("/m", 8, 8, 4, global_rank=rank, node_rank=rank, num_nodes=2, world_size=2))
        failure = None
        if scenario == "generate" and rank == 1:
            failure = EngineError("the rollout engine VLLMServerEngine failed while generating: URLError: refused"
                                  + engine.failure_hint())
        rows = agree(engine, failure, "generating", seconds=1.5 + rank)
        queue.put((rank, "ok", (engine.url, engine.budget, engine.engine_index, engine.pusher, rows)))
    except Exception as error:  # noqa: BLE001 - the test reads each rank's outcome
        queue.put((rank, type(error).__name__, str(error)))
    finally:
        dist.destroy_process_group()


def run_two_nodes(scenario: str) -> dict[int, tuple]:
    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), free_port()
    ranks = [ctx.Process(target=_rank, args=(r, port, scenario, queue)) for r in (0, 1)]
    for p in ranks:
        p.start()
    try:
        outcomes = dict((r, (kind, detail)) for r, kind, detail in (queue.get(timeout=120) for _ in ranks))
    finally:
        for p in ranks:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert not any(p.is_alive() for p in ranks)
    return outcomes


@pytest.mark.timeout(180)
def test_every_rank_learns_its_own_engine_and_every_engines_time():
    outcomes = run_two_nodes("ok")
    (kind0, (url0, budget0, index0, pusher0, rows)), (kind1, (url1, _, index1, pusher1, rows1)) = outcomes[0], outcomes[1]
    assert kind0 == kind1 == "ok"
    assert (url0, index0, pusher0) == ("http://127.0.0.1:9000", 0, True)
    assert (url1, index1, pusher1) == ("http://127.0.0.1:9001", 1, True)  # its own node's engine, by loopback
    assert budget0 == (8192, 64)  # one rank per engine: the whole budget
    assert rows == rows1 == [(0, 1.5), (1, 2.5)]


@pytest.mark.timeout(180)
def test_an_engine_that_does_not_start_fails_both_nodes_with_its_message():
    outcomes = run_two_nodes("start")
    for rank in (0, 1):
        kind, message = outcomes[rank]
        assert kind == "EngineError", message
        assert message == (f"vLLM engine 1 of 2 (node 1) did not start, so every rank stops: the vLLM engine process "
                           f"exited with code 1 while starting: float99 (its log: {LOG.format(1)})"), message


@pytest.mark.timeout(180)
def test_an_engine_failing_while_generating_fails_the_other_node_too_naming_it_and_its_log():
    outcomes = run_two_nodes("generate")
    kind1, own = outcomes[1]
    assert kind1 == "EngineError" and own.startswith("the rollout engine VLLMServerEngine failed while generating")
    assert f"vLLM engine 1 of 2 (node 1, the server at http://node1:9001; its log: {LOG.format(1)})." in own
    assert f"The engine process on node 1 logs to {LOG.format(1)}; it ends:\n(no log)" in own
    kind0, other = outcomes[0]
    assert kind0 == "EngineError"
    assert other.startswith(f"vLLM engine 1 of 2 (node 1, the server at http://node1:9001; its log: {LOG.format(1)}) "
                            "failed on rank 1 while generating, so every rank stops. Rank 1 reported:\n"
                            "the rollout engine VLLMServerEngine failed while generating: URLError: refused"), other
