"""vLLM's NCCL weight transfer with a gloo communicator: the same engines, routes and checks, on CPU.

vLLM's weight transfer has a registry on each side (``WeightTransferEngineFactory`` in the worker,
``WeightTransferTrainerFactory`` in the trainer). This module registers ``r1lit_gloo`` in both: subclasses of vLLM's
own NCCL engines that swap the NCCL communicator for a gloo group of their own and the CUDA-stream calls for plain
ones. So ``NCCLTransport``'s code — its ``WeightSource``, ``trainer_init`` and the init → start → update → finish
round trip, vLLM's metadata/iteration check, the worker's layerwise reload — runs in CI against vLLM's CPU server.
What stays GPU-only: NCCL itself (``PyNcclCommunicator``) and the packed-buffer path, which pipelines on CUDA streams.

Written for vLLM 0.32 (``vllm/distributed/weight_transfer/nccl_engine.py``): the overridden methods mirror its
unpacked branch.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar

import torch
import torch.distributed as dist
from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory, WeightTransferTrainerFactory
from vllm.distributed.weight_transfer.nccl_common import NCCLWeightTransferInitInfo, worker_init_payload
from vllm.distributed.weight_transfer.nccl_engine import (
    NCCLTrainerInitInfo,
    NCCLTrainerWeightTransferEngine,
    NCCLWeightTransferEngine,
    NCCLWeightTransferUpdateInfo,
)

BACKEND = "r1lit_gloo"


class GlooCommunicator:
    """What vLLM's NCCL engines call on their communicator (``broadcast``, ``destroy``), over a gloo group of the
    trainer's rank 0 and the engine's workers only. Every call fails after ``timeout_s`` instead of waiting forever."""

    def __init__(self, address: str, port: int, rank: int, world_size: int, timeout_s: float):
        from vllm.distributed.utils import stateless_init_torch_distributed_process_group

        self.group = stateless_init_torch_distributed_process_group(
            address, port, rank, world_size, "gloo", timeout=timedelta(seconds=timeout_s))

    def broadcast(self, tensor: torch.Tensor, src: int, stream=None) -> None:
        options = dist.BroadcastOptions()
        options.rootRank = src
        self.group.broadcast([tensor], options).wait()

    def destroy(self) -> None:
        from vllm.distributed.utils import stateless_destroy_torch_distributed_process_group

        stateless_destroy_torch_distributed_process_group(self.group)


@dataclass(kw_only=True)
class GlooWorkerInitInfo(NCCLWeightTransferInitInfo):
    timeout_s: float = 300.0
    """Deadline of the rendezvous and of every broadcast, in seconds."""


@dataclass
class GlooTrainerInitInfo(NCCLTrainerInitInfo):
    backend: ClassVar[str] = BACKEND
    packed: bool = False  # vLLM's packed path pipelines on CUDA streams
    timeout_s: float = 300.0


class GlooWeightTransferEngine(NCCLWeightTransferEngine):
    """Worker side: vLLM's NCCL engine (layerwise reload in start/finish) receiving over gloo."""

    init_info_cls = GlooWorkerInitInfo

    def init_transfer_engine(self, init_info: GlooWorkerInitInfo) -> None:
        self.packed = False
        config = self.parallel_config  # the worker's rank in the transfer group, as vLLM's worker_init_process_group
        rank = config.data_parallel_index * config.world_size + config.rank + init_info.rank_offset
        self.model_update_group = GlooCommunicator(init_info.master_address, init_info.master_port, rank,
                                                   init_info.world_size, init_info.timeout_s)

    def finish_weight_update(self) -> None:
        super().finish_weight_update()
        from r1lit.rollout.vllm.worker import refresh_lm_head

        refresh_lm_head(self.model)  # the CPU build's repacked copy of a tied lm_head (a no-op on GPUs)

    def update_weights(self, update_info: dict) -> None:
        self.receive_weights(self.parse_update_info(update_info))  # gloo is synchronous: no accelerator sync

    def receive_weights(self, update_info: NCCLWeightTransferUpdateInfo) -> None:
        if self.model_update_group is None:
            raise RuntimeError("gloo weight transfer not initialised: call init_transfer_engine() first")
        for name, dtype_name, shape in zip(update_info.names, update_info.dtype_names, update_info.shapes):
            weight = torch.empty(shape, dtype=getattr(torch, dtype_name), device=self.device)
            self.model_update_group.broadcast(weight, src=0)
            self.model.load_weights([(name, weight)])


class GlooTrainerWeightTransferEngine(NCCLTrainerWeightTransferEngine):
    """Trainer side: vLLM's ``send_weights`` round trip (start → update beside the broadcast → finish) over gloo."""

    init_info_cls = GlooTrainerInitInfo

    @classmethod
    def trainer_init(cls, init_info: GlooTrainerInitInfo, *, client, source=None) -> "GlooTrainerWeightTransferEngine":
        if source is None:
            raise ValueError("gloo trainer weight transfer requires a WeightSource")
        engine = cls(client=client, source=source, is_sender=init_info.is_sender, packed=False)
        if not engine.is_sender:
            return engine
        worker = GlooWorkerInitInfo(master_address=init_info.master_address, master_port=init_info.master_port,
                                    rank_offset=1, world_size=init_info.world_size, timeout_s=init_info.timeout_s)
        with ThreadPoolExecutor(max_workers=1) as pool:  # the workers block in the rendezvous as the trainer does
            future = pool.submit(engine.client.init_weight_transfer_engine, worker_init_payload(worker))
            engine.model_update_group = GlooCommunicator(init_info.master_address, init_info.master_port, 0,
                                                         init_info.world_size, init_info.timeout_s)
            future.result()
        return engine

    def _broadcast(self, source, meta) -> None:
        if not self.is_sender:
            for _ in source:
                pass
            return
        for _name, tensor in self._checked_iter(source, meta):
            self.model_update_group.broadcast(tensor.contiguous(), src=0)


def register() -> None:
    """Register ``r1lit_gloo`` in both of vLLM's factories (a second call finds it registered and does nothing)."""
    for factory, engine in ((WeightTransferEngineFactory, GlooWeightTransferEngine),
                            (WeightTransferTrainerFactory, GlooTrainerWeightTransferEngine)):
        try:
            factory.register_engine(BACKEND, engine)
        except ValueError:  # "already registered"
            pass
