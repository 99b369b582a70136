"""The weight-transfer group of a server with data × tensor parallel workers, on vLLM 0.32's own code: the trainer
joins with ``world_size = 1 + GET /get_world_size`` (vLLM's ``world_size_across_dp``: TP × PP × DP), each worker
takes the rank vLLM's ``worker_init_process_group`` gives it (``dp_rank × TP·PP + tp_rank + 1``), and a push reaches
every worker. The workers here are r1lit's gloo engines (vLLM's NCCL engine class with a gloo communicator) in
threads, each with the ``ParallelConfig`` its vLLM worker would have; the trainer is vLLM's ``send_weights`` round
trip through r1lit's ``WeightSource``. What a server adds on top (HTTP routes fanning out to every worker of every
DP engine) runs in tests/integration/test_vllm_multi_engine.py where the CPU build allows it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from r1lit.rollout.vllm.engine_process import free_port

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(180)]


def parallel_config(dp: int, tp: int, dp_rank: int = 0, tp_rank: int = 0):
    """The ``ParallelConfig`` of the worker (dp_rank, tp_rank) of a server with ``--data-parallel-size dp
    --tensor-parallel-size tp`` (vLLM sets ``rank`` per worker; ``data_parallel_index`` keeps the DP rank)."""
    from vllm.config import ParallelConfig

    config = ParallelConfig(data_parallel_size=dp, tensor_parallel_size=tp, data_parallel_rank=dp_rank)
    config.rank = tp_rank
    return config


def vllm_worker_rank(config, world_size: int) -> int:
    """The rank vLLM's own ``worker_init_process_group`` (``nccl_common``) gives this worker: its NCCL rendezvous
    is replaced by a recorder, the arithmetic is vLLM's."""
    from vllm.distributed.weight_transfer import nccl_common

    seen = {}
    original = nccl_common.stateless_init_process_group
    nccl_common.stateless_init_process_group = lambda address, port, rank, world, device: seen.update(rank=rank)
    device_index = torch.accelerator.current_device_index
    torch.accelerator.current_device_index = lambda: 0
    try:
        info = nccl_common.NCCLWeightTransferInitInfo(master_address="127.0.0.1", master_port=1, rank_offset=1,
                                                      world_size=world_size)
        nccl_common.worker_init_process_group(info, config)
    finally:
        nccl_common.stateless_init_process_group = original
        torch.accelerator.current_device_index = device_index
    return seen["rank"]


class Received(torch.nn.Module):
    """Stands for the worker's model: records what ``load_weights`` is given."""

    def __init__(self):
        super().__init__()
        self.loaded: list[tuple[str, torch.Tensor]] = []

    def load_weights(self, weights):
        self.loaded += [(name, tensor.clone()) for name, tensor in weights]


class Server:
    """The four weight-transfer routes of a server, fanned out to its workers at once (vLLM's ``collective_rpc``
    reaches every worker of every DP engine; they all join each broadcast)."""

    def __init__(self, workers):
        self.workers = workers

    def _all(self, call) -> None:
        with ThreadPoolExecutor(len(self.workers)) as pool:
            for future in [pool.submit(call, w) for w in self.workers]:
                future.result(timeout=60)

    def init_weight_transfer_engine(self, init_info: dict) -> None:
        self._all(lambda w: w.init_transfer_engine(w.parse_init_info(dict(init_info))))

    def start_weight_update(self) -> None:  # the layerwise reload of a real model: not part of the rank question
        pass

    def update_weights(self, update_info: dict) -> None:
        self._all(lambda w: w.update_weights(dict(update_info)))

    def finish_weight_update(self, weight_version=None) -> None:
        pass


def gloo_worker(config):
    from r1lit.rollout.vllm.gloo_transfer import GlooWeightTransferEngine

    worker = GlooWeightTransferEngine.__new__(GlooWeightTransferEngine)  # the parts of a vLLM worker it uses
    worker.parallel_config, worker.device, worker.model, worker.model_update_group = config, torch.device("cpu"), Received(), None
    return worker


@pytest.mark.parametrize("dp, tp", [(2, 1), (1, 2), (2, 2)], ids=["dp2", "tp2", "dp2xtp2"])
def test_every_worker_of_a_data_and_tensor_parallel_server_gets_its_rank_and_every_tensor(dp, tp):
    from r1lit.rollout.vllm.gloo_transfer import GlooTrainerInitInfo, GlooTrainerWeightTransferEngine, register
    from r1lit.rollout.vllm.transports import push_source

    register()
    workers_reported = parallel_config(dp, tp).world_size_across_dp  # what GET /get_world_size answers
    assert workers_reported == dp * tp
    world = 1 + workers_reported
    configs = [parallel_config(dp, tp, d, t) for d in range(dp) for t in range(tp)]
    workers = [gloo_worker(c) for c in configs]
    source = push_source()
    info = GlooTrainerInitInfo(master_address="127.0.0.1", master_port=free_port(), world_size=world, rank=0,
                               timeout_s=60)
    trainer = GlooTrainerWeightTransferEngine.trainer_init(info, client=Server(workers), source=source)
    try:
        ranks = [w.model_update_group.group.rank() for w in workers]
        assert ranks == [vllm_worker_rank(c, world) for c in configs]  # r1lit's gloo engine = vLLM's arithmetic
        assert sorted(ranks) == list(range(1, world))  # every worker its own rank; 0 is the trainer
        weights = [("model.embed_tokens.weight", torch.arange(12.0).view(3, 4)), ("lm_head.bias", torch.tensor([2.5, -1.0]))]
        source.tensors = weights
        trainer.send_weights()
        for worker in workers:
            assert [n for n, _ in worker.model.loaded] == [n for n, _ in weights]
            for (_, got), (_, sent) in zip(worker.model.loaded, weights):
                assert torch.equal(got, sent)
    finally:
        trainer.shutdown()
        for worker in workers:
            worker.shutdown()
