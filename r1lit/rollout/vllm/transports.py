"""How the trainer's weights reach a vLLM engine that runs in another process: vLLM's own weight-transfer API.

``NCCLTransport`` drives vLLM's trainer-side engine (``WeightTransferTrainerFactory``) over the server's
``/init_weight_transfer_engine`` … ``/finish_weight_update`` routes; the server must be started with
``--weight-transfer-config '{"backend": …}'``, which ``VLLMServerEngine`` adds when it starts the server.
``GlooTransport`` is the same class with vLLM's NCCL communicator swapped for gloo (``gloo_transfer``), so the push
code runs on CPU in CI. Every push and the rendezvous have a deadline (the engine's ``request_timeout``): a push
that does not finish in time raises, naming the engine as not serving the pushed weights, instead of hanging.

One transport per engine, on that engine's pusher (with an engine per node: each node's local rank 0): its transfer
group is the pusher (rank 0) and every worker of that server, ``world_size = 1 + GET /get_world_size`` (vLLM's
TP × PP × DP); vLLM gives the worker of DP replica d and TP rank t the rank ``d × TP·PP + t + 1``. Engines on
different nodes are different groups with different pushers, so they receive in parallel.

The engine resets vLLM's prefix cache after every push: cached keys of prompts computed with the old weights
would otherwise be reused. Written for vLLM 0.32.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import urlparse

import torch
from torch import Tensor

from r1lit.errors import EngineError
from r1lit.rollout.vllm.engine_process import free_port, request


class WeightTransport:
    """Moves (name, tensor) pairs into the engine behind ``base_url``."""

    def server_args(self) -> list[str]:
        """Extra vLLM server arguments this transport needs when r1lit starts the server."""
        return []

    def connect(self, base_url: str, timeout: float) -> None:
        """Called once on the rank that pushes into the engine at ``base_url``, after the server answers."""
        self.base_url, self.timeout = base_url, timeout

    def send(self, named_tensors: Iterable[tuple[str, Tensor]], dtype: torch.dtype | None = None) -> None:
        """Move the tensors (cast to ``dtype``, the engine's own, when given: half the bytes for a bf16 engine)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class NCCLTransport(WeightTransport):
    """vLLM's NCCL weight transfer: rank 0's GPU broadcasts each tensor to the engine's workers."""

    backend = "nccl"  # the key in vLLM's weight-transfer registries
    device = "cuda"  # where the tensors are broadcast from

    def __init__(self, packed: bool = True, master_address: str | None = None):
        """
        Args:
            packed: batch tensors into vLLM's packed buffers (fewer, larger broadcasts; CUDA only).
            master_address: address of the trainer's rank 0 as the engine's workers see it. None = 127.0.0.1 for a
                server on this host, else this host's address on the route to the server's host.
        """
        self.packed, self.master_address = packed, master_address
        self._engine = self._source = None

    def server_args(self) -> list[str]:
        return ["--weight-transfer-config", f'{{"backend": "{self.backend}"}}']

    def connect(self, base_url: str, timeout: float) -> None:
        super().connect(base_url, timeout)
        workers = int(request("GET", f"{base_url}/get_world_size", timeout=min(timeout, 60))["world_size"])
        address = self.master_address or trainer_address(base_url)
        self._source = push_source()
        info = self._init_info(rank=0, master_address=address, master_port=free_port(), world_size=1 + workers)
        run_with_deadline(lambda: self._trainer_init(info), timeout, f"the weight-transfer rendezvous with the vLLM "
                          f"server at {base_url} ({workers} worker(s), trainer address {address})")

    def _init_info(self, **fields):
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        return NCCLTrainerInitInfo(packed=self.packed, **fields)

    def _trainer_init(self, info) -> None:
        from vllm.distributed.weight_transfer.clients import HTTPVLLMWeightSyncClient
        from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory

        client = HTTPVLLMWeightSyncClient(self.base_url, timeout=self.timeout)
        self._engine = WeightTransferTrainerFactory.trainer_init(info, client=client, source=self._source)

    def send(self, named_tensors: Iterable[tuple[str, Tensor]], dtype: torch.dtype | None = None) -> None:
        self._source.tensors = [(name, t.detach().to(self.device, dtype)) for name, t in named_tensors]
        try:
            run_with_deadline(self._engine.send_weights, self.timeout,
                              f"the weight push to the vLLM server at {self.base_url}")
        finally:
            self._source.tensors = []

    def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            try:
                engine.shutdown()
            except Exception:  # noqa: BLE001 - a transfer group broken by a failed push cannot be torn down cleanly
                pass


class GlooTransport(NCCLTransport):
    """``NCCLTransport`` over gloo from the CPU: vLLM's CPU server (CI), or a trainer without CUDA."""

    backend = "r1lit_gloo"
    device = "cpu"

    def __init__(self, master_address: str | None = None):
        """
        Args:
            master_address: as ``NCCLTransport``'s.
        """
        super().__init__(packed=False, master_address=master_address)

    def _init_info(self, **fields):
        from r1lit.rollout.vllm.gloo_transfer import GlooTrainerInitInfo, register

        register()
        return GlooTrainerInitInfo(timeout_s=self.timeout, **fields)


def run_with_deadline(call: Callable[[], None], timeout: float, what: str) -> None:
    """Run ``call`` in a daemon thread and wait at most ``timeout`` seconds: a collective whose peer never comes
    (NCCL has no timeout of its own) raises here instead of hanging the run; the stuck thread dies with it."""
    box: dict = {}

    def target() -> None:
        try:
            call()
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = error

    thread = threading.Thread(target=target, daemon=True, name="r1lit-weight-transfer")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise EngineError(f"{what} did not finish within {timeout:.0f} s (VLLMServerEngine request_timeout): the "
                          "engine is not serving the pushed weights")
    if "error" in box:
        raise EngineError(f"{what} failed ({type(box['error']).__name__}: {box['error']}): the engine is not "
                          "serving the pushed weights") from box["error"]


def trainer_address(base_url: str) -> str:
    """This host's address as the server at ``base_url`` reaches it: loopback for a local server, else the
    source address of the route to the server's host (no packet is sent)."""
    host = urlparse(base_url).hostname or "127.0.0.1"
    if host in ("localhost", "127.0.0.1", "::1"):
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))
        return probe.getsockname()[0]


def push_source():
    """vLLM 0.32's ``WeightSource`` over the tensors of one push (vLLM imported only when a push is set up)."""
    from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource

    class PushSource(WeightSource):
        tensors: list[tuple[str, Tensor]] = []

        def metadata(self) -> list[ParamMeta]:
            return [ParamMeta(name, t.dtype, tuple(t.shape)) for name, t in self.tensors]

        def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
            return iter(self.tensors)

    return PushSource()
