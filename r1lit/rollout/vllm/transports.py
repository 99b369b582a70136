"""How the trainer's weights reach a vLLM engine that runs in another process.

- ``FileTransport`` (CPU, CI, any server that shares a filesystem with rank 0): one safetensors file written
  atomically, loaded by the worker extension ``r1lit_load_weights`` through the server's ``/collective_rpc``.
- ``NCCLTransport`` (CUDA): vLLM's own weight-transfer API (``WeightTransferTrainerFactory`` with the NCCL backend,
  driven over the server's ``/init_weight_transfer_engine`` … ``/finish_weight_update`` routes), written for
  vLLM 0.32. The server must be started with ``--weight-transfer-config '{"backend": "nccl"}'``, which
  ``VLLMServerEngine`` adds when it starts the server with this transport.

The engine resets vLLM's prefix cache after every transport: cached keys of prompts computed with the old weights
would otherwise be reused.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import Tensor

from r1lit.rollout.vllm.engine_process import free_port, request


class WeightTransport:
    """Moves (name, tensor) pairs into the engine behind ``base_url``."""

    def server_args(self) -> list[str]:
        """Extra vLLM server arguments this transport needs when r1lit starts the server."""
        return []

    def connect(self, base_url: str, timeout: float) -> None:
        """Called once on the rank that pushes, after the server answers."""
        self.base_url, self.timeout = base_url, timeout

    def send(self, named_tensors: Iterable[tuple[str, Tensor]], dtype: torch.dtype | None = None) -> None:
        """Move the tensors (cast to ``dtype``, the engine's own, when given: half the bytes for a bf16 engine)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class FileTransport(WeightTransport):
    """Writes the weights as one safetensors file that the server's worker loads."""

    def __init__(self, folder: str | None = None):
        """
        Args:
            folder: where the file is written; it must be readable by the server at the same path. None = a
                private folder in ``/dev/shm`` (memory, no disk writes) when it exists, else the system temp folder.
        """
        self.folder = folder
        self._dir: tempfile.TemporaryDirectory | None = None

    def connect(self, base_url: str, timeout: float) -> None:
        super().connect(base_url, timeout)
        if self.folder is None:
            root = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
            self._dir = tempfile.TemporaryDirectory(prefix="r1lit-weights-", dir=root)
        self.path = Path(self.folder or self._dir.name) / "policy.safetensors"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def send(self, named_tensors: Iterable[tuple[str, Tensor]], dtype: torch.dtype | None = None) -> None:
        from safetensors.torch import save_file

        weights = {name: tensor.detach().to("cpu", dtype).contiguous() for name, tensor in named_tensors}
        partial = self.path.with_name(self.path.name + ".partial")
        save_file(weights, str(partial))
        os.replace(partial, self.path)  # the server never reads half a file
        answer = request("POST", f"{self.base_url}/collective_rpc",
                         {"method": "r1lit_load_weights", "args": [str(self.path)]}, timeout=self.timeout)
        loaded = int(answer["results"][0])
        if loaded != len(weights):
            raise RuntimeError(f"the engine loaded {loaded} of {len(weights)} tensors from {self.path}")

    def close(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


class NCCLTransport(WeightTransport):
    """vLLM's NCCL weight transfer: rank 0's GPU broadcasts each tensor to the engine's GPU."""

    def __init__(self, packed: bool = True, master_address: str = "127.0.0.1"):
        """
        Args:
            packed: batch tensors into vLLM's packed buffers (fewer, larger broadcasts).
            master_address: address of the trainer's rank 0 as the engine's host sees it (127.0.0.1 for a reserved
                GPU on the same node; this machine's address for a server attached by ``base_url``).
        """
        self.packed, self.master_address = packed, master_address
        self._engine = self._source = None

    def server_args(self) -> list[str]:
        return ["--weight-transfer-config", '{"backend": "nccl"}']

    def connect(self, base_url: str, timeout: float) -> None:
        super().connect(base_url, timeout)
        from vllm.distributed.weight_transfer.clients import HTTPVLLMWeightSyncClient
        from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        self._source = _push_source()
        info = NCCLTrainerInitInfo(rank=0, master_address=self.master_address, master_port=free_port(), world_size=2,
                                   packed=self.packed)  # the trainer's rank 0 + one engine GPU (tensor parallel 1)
        client = HTTPVLLMWeightSyncClient(base_url, timeout=timeout)
        self._engine = WeightTransferTrainerFactory.trainer_init(info, client=client, source=self._source)

    def send(self, named_tensors: Iterable[tuple[str, Tensor]], dtype: torch.dtype | None = None) -> None:
        self._source.tensors = [(name, t.detach().to("cuda", dtype)) for name, t in named_tensors]
        try:
            self._engine.send_weights()
        finally:
            self._source.tensors = []

    def close(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None


def _push_source():
    """vLLM's ``WeightSource`` over the tensors of one push (vLLM imported only when NCCL is used)."""
    from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource

    class PushSource(WeightSource):
        tensors: list[tuple[str, Tensor]] = []

        def metadata(self) -> list[ParamMeta]:
            return [ParamMeta(name, t.dtype, tuple(t.shape)) for name, t in self.tensors]

        def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
            return iter(self.tensors)

    return PushSource()
