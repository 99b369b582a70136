"""Rollouts from vLLM servers in their own processes: the reserved-GPU topology, on one node or several, or servers
that run elsewhere.

What runs where (``VLLMServerEngine``; which rank does what is ``topology.engine_site``):

- **An engine per node** (``engine_per_node=True``, the default). On every node, local rank 0 starts vLLM's
  OpenAI-compatible server as its own process on that node's K = ``data_parallel_size × tensor_parallel_size``
  reserved GPUs (the first K visible ones that do not train, given to it as ``CUDA_VISIBLE_DEVICES``; vLLM spreads
  them with its own ``--data-parallel-size`` / ``--tensor-parallel-size``), or on the CPU where there is no GPU.
  The node's ranks send it their prompts, so prompts and completions stay on the node. Its local rank 0 pushes the
  weights into it.
- **One engine for the job** (``engine_per_node=False``): global rank 0 starts it on node 0's reserved GPUs; ranks
  on other nodes reach it at ``MASTER_ADDR``.
- **Attached** (``base_url``): one URL is one engine for every node; a list is one engine per node, in node order.
  r1lit checks them at start and never starts or stops them.

Every rank learns every engine's outcome at start (one all-gather), so an engine that fails to start fails every
rank with that engine's message and log. Every rank sends its own prompts (token ids, per-prompt seeds) to its
engine's ``/v1/completions`` and gets token ids and sampler log-probs back, the same ``Rollout`` as the in-process
engine's. Each engine's pusher sends the weights through its ``WeightTransport`` (vLLM's weight-transfer API, one
transfer group per engine: the pusher and every worker of that server); the engines receive in parallel, each pusher
in its own process, from the tensors its rank already holds (under ZeRO-3 every rank joins one gather per
parameter; no engine causes another). The ``VLLMEngineCallback`` counts a push done when every rank reports its
engine served (``rollout.agreement``). Written for vLLM 0.32's server routes.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from r1lit.errors import ConfigError, EngineError, R1LitError
from r1lit.rollout.background import BackgroundGeneration
from r1lit.rollout.vllm.engine_process import EngineProcess, child_environment, free_port, log_tail, request
from r1lit.rollout.vllm.launch import EngineLaunch, check_model_len, prefill_budget, split_calls
from r1lit.rollout.vllm.placement import physical_gpus, reserved_gpus
from r1lit.rollout.vllm.topology import EngineSite, engine_site
from r1lit.rollout.vllm.transports import GlooTransport, NCCLTransport, WeightTransport
from r1lit.rollout.types import Rollout, SamplingConfig, rollout_from_samples
from r1lit.rollout.vllm.base import CPU_KV_CACHE_BYTES, GENERATION_CONFIG, VLLMSettings, sampling_fields
from r1lit.rollout.vllm.server_check import SERVED_NAME, check_server
from r1lit.training.distributed import gather_objects

FAILURE_GRACE_S = 5.0  # how long a failure waits for a dying server to exit before describing it


class VLLMServerEngine(BackgroundGeneration, VLLMSettings):
    """vLLM in its own process (``reserved``): an engine per node on its reserved GPUs, one for the job, or attached
    by ``base_url``."""

    def __init__(
        self,
        base_url: str | list[str] | None = None,
        data_parallel_size: int = 1,
        tensor_parallel_size: int = 1,
        engine_per_node: bool = True,
        transport: WeightTransport | None = None,
        startup_timeout: float = 900.0,
        request_timeout: float = 600.0,
        env: dict[str, str] | None = None,
        **settings,
    ):
        """
        Args:
            base_url: attach to vLLM servers that are already running instead of starting them: one URL (e.g.
                ``http://gen-node:8000``) for one engine that serves every node, or a list with one URL per node
                (node n's ranks use the n-th; with engine_per_node false, a list of one URL). Each must run with ``VLLM_SERVER_DEV_MODE=1``,
                ``--worker-extension-cls r1lit.rollout.vllm.worker.R1LitWorkerExtension``, ``--logprobs-mode
                processed_logprobs`` and ``--weight-transfer-config '{"backend": "nccl"}'`` (``"r1lit_gloo"`` for a
                CPU server), and serve the policy's starting weights. The trainer checks health, model and version
                at start and never stops them. The settings below then describe those servers and are not applied.
            data_parallel_size: vLLM data-parallel replicas in each started server (``--data-parallel-size``).
            tensor_parallel_size: GPUs each replica is split over (``--tensor-parallel-size``). Each started
                server takes data_parallel_size × tensor_parallel_size reserved GPUs of its node.
            engine_per_node: start a server on every node, serving that node's ranks (prompts stay on the node);
                False = one server on node 0 for the whole job.
            transport: how an engine's pusher sends weights through vLLM's weight-transfer API: ``NCCLTransport``
                (GPUs) or ``GlooTransport`` (the same over gloo, from the CPU). None = NCCL where CUDA is available,
                else gloo. An attached server must have been started with the matching ``--weight-transfer-config``.
            startup_timeout: seconds to wait for a started server to answer (or for an attached one's health check).
            request_timeout: seconds one generation or weight-push request may take before the step fails.
            env: extra environment for the server process (e.g. ``VLLM_CPU_OMP_THREADS_BIND``).
            settings: the vLLM engine settings (dtype, memory, seed; see ``VLLMEngine``).
        """
        super().__init__(**settings)
        if startup_timeout <= 0 or request_timeout <= 0:
            raise ConfigError("VLLMServerEngine startup_timeout and request_timeout must be > 0 seconds")
        if data_parallel_size < 1 or tensor_parallel_size < 1:
            raise ConfigError(f"VLLMServerEngine data_parallel_size and tensor_parallel_size must be >= 1, got "
                              f"{data_parallel_size} and {tensor_parallel_size}")
        if isinstance(base_url, (list, tuple)) and not base_url:
            raise ConfigError("VLLMServerEngine base_url is an empty list: give one URL per node, one URL, or none")
        self.base_url = base_url.rstrip("/") if isinstance(base_url, str) else (list(base_url) if base_url else None)
        if self.base_url and self.block_size is not None:
            raise ConfigError(f"VLLMServerEngine block_size={self.block_size} cannot reach a server attached by base_url:"
                              f" it keeps the size it was started with; start it with --block-size {self.block_size} "
                              "and leave model.engine.block_size unset")
        self.data_parallel_size, self.tensor_parallel_size = data_parallel_size, tensor_parallel_size
        self.engine_per_node = engine_per_node
        self.transport = transport
        self.startup_timeout, self.request_timeout = startup_timeout, request_timeout
        self.env = dict(env or {})
        self.process: EngineProcess | None = None
        self.url: str | None = None  # where this rank sends its prompts
        self.model_name = SERVED_NAME
        self.budget, self.on_cpu, self.pusher = (0, 0), False, False
        self.site: EngineSite | None = None
        self.engines: dict[int, dict] = {}  # every engine's start outcome (urls, node, log path), on every rank

    @property
    def workers(self) -> int:
        """GPUs (or CPU workers) a started server takes: data_parallel_size × tensor_parallel_size."""
        return self.data_parallel_size * self.tensor_parallel_size

    # ---- start: each engine's owner starts or checks it; every rank learns every engine's outcome -------------

    def start(self, launch: EngineLaunch) -> None:
        """Every rank calls this together: each engine's owner brings it up (or checks the attached one), then one
        all-gather tells every rank every engine's address or failure; one engine that fails fails every rank
        with that engine's message instead of a hang."""
        site = engine_site(launch.global_rank, launch.local_rank, launch.node_rank, launch.num_nodes,
                           launch.world_size, self.engine_per_node, self.base_url)
        self.site, self.engine_index, self.pusher = site, site.index, site.owner
        outcome = None
        if site.owner:
            outcome = {"index": site.index, "node": site.node}
            try:
                outcome.update(self._bring_up(launch, site))
            except R1LitError as error:
                outcome["error"] = (type(error).__name__, str(error))
            except Exception as error:  # noqa: BLE001 - reported to every rank below
                outcome["error"] = ("EngineError", f"starting the vLLM server failed: {type(error).__name__}: {error}")
            if "error" in outcome and self.process is not None:
                outcome["log_path"] = str(self.process.log_path)
        self.engines = {o["index"]: o for o in gather_objects(outcome) if o is not None}
        failed = sorted((i for i, o in self.engines.items() if "error" in o), key=lambda i: (i != site.index, i))
        if failed:
            self.close()
            kind, message = self.engines[failed[0]]["error"]
            if site.count > 1:
                message = f"{self.describe(failed[0])} did not start, so every rank stops: {message}"
            raise (ConfigError if kind == "ConfigError" else EngineError)(message)
        found = self.engines[site.index]
        self.model_name, self.budget, self.on_cpu = found["model_name"], tuple(found["budget"]), found["on_cpu"]
        self.url = found["local_url"] if launch.node_rank == found["node"] else found["remote_url"]
        if self.on_cpu:  # the engine's ranks share one prefill budget (see prefill_budget)
            self.budget = (self.budget[0] // site.sharing, max(self.budget[1] // site.sharing, 1))

    def _bring_up(self, launch: EngineLaunch, site: EngineSite) -> dict:
        self.transport = self._transport()
        log_path = None
        if site.base_url is None:
            port = free_port()
            self.process = self._spawn(launch, site, port)
            log_path = str(self.process.log_path)
            local_url = f"http://127.0.0.1:{port}"
            self.process.wait_ready(local_url, self.startup_timeout)
            host = (os.environ.get("MASTER_ADDR") if site.node == 0 else None) or socket.gethostname()
            remote_url = f"http://{host}:{port}"
        else:
            local_url = remote_url = site.base_url
            try:
                request("GET", f"{site.base_url}/health", timeout=min(self.startup_timeout, 30))
            except (OSError, RuntimeError) as error:
                raise EngineError(f"no vLLM server answers at base_url {site.base_url} ({error}); start it first "
                                  "or fix base_url") from None
        info = check_server(local_url, launch, self.workers if site.base_url is None else None)
        self.transport.connect(local_url, self.request_timeout)
        return {"local_url": local_url, "remote_url": remote_url, "log_path": log_path, **info}

    def _spawn(self, launch: EngineLaunch, site: EngineSite, port: int) -> EngineProcess:
        cuda_visible = None
        if torch.cuda.is_available():
            training = launch.training_gpus or launch.training_devices
            cuda_visible = physical_gpus(reserved_gpus(torch.cuda.device_count(), training, self.workers))
        args = self.server_args(launch, site, port, on_gpu=cuda_visible is not None)
        log_dir = Path(launch.log_dir) if launch.log_dir else Path.cwd()
        return EngineProcess(args, child_environment(self.env, cuda_visible), log_dir / site.log_name)

    def server_args(self, launch: EngineLaunch, site: EngineSite, port: int, on_gpu: bool) -> list[str]:
        """vLLM's server arguments for the engine at ``site``: the model, r1lit's worker extension and log-prob
        mode, data/tensor parallelism, memory, and the transport's weight-transfer backend."""
        shared_across_nodes = site.count == 1 and launch.num_nodes > 1  # other nodes' ranks reach it by address
        args = [
            "--model", launch.model_path, "--tokenizer", launch.model_path, "--served-model-name", SERVED_NAME,
            "--dtype", self.dtype,
            "--max-model-len", str(check_model_len(self.max_model_len, launch.max_prompt_length, launch.max_tokens)),
            "--gpu-memory-utilization", str(self.gpu_memory_utilization or 0.9), "--seed", str(self.seed),
            "--logprobs-mode", "processed_logprobs", "--generation-config", GENERATION_CONFIG,
            "--worker-extension-cls", "r1lit.rollout.vllm.worker.R1LitWorkerExtension",
            "--host", "0.0.0.0" if shared_across_nodes else "127.0.0.1", "--port", str(port),
            "--enable-prefix-caching" if self.enable_prefix_caching else "--no-enable-prefix-caching",
            "--disable-uvicorn-access-log",
        ]
        if self.data_parallel_size > 1:  # one API server, K replicas on this node, requests balanced by vLLM
            args += ["--data-parallel-size", str(self.data_parallel_size)]
        if self.tensor_parallel_size > 1:
            args += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        if self.enforce_eager:
            args.append("--enforce-eager")
        block_size = self.kv_block_size(on_cpu=not on_gpu)
        if block_size is not None:
            args += ["--block-size", str(block_size)]
        kv_bytes = self.kv_cache_memory_bytes or (None if on_gpu else CPU_KV_CACHE_BYTES)
        if kv_bytes is not None:
            args += ["--kv-cache-memory-bytes", str(kv_bytes)]
        if not on_gpu:  # vLLM's CPU build: every sharing rank's prompts prefilled whole (see prefill_budget)
            tokens, seqs = prefill_budget(launch.sequences_per_call * site.sharing, launch.max_prompt_length)
            args += ["--max-num-batched-tokens", str(tokens), "--max-num-seqs", str(seqs)]
        return args + self._transport().server_args()

    def _transport(self) -> WeightTransport:
        """The configured transport, or the default: NCCL where CUDA is available, else gloo."""
        return self.transport or (NCCLTransport() if torch.cuda.is_available() else GlooTransport())

    # ---- generation and weights ------------------------------------------------------------------------------

    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, seed: int | None = None) -> Rollout:
        if self.url is None:
            raise RuntimeError("VLLMServerEngine.generate called before start(): the VLLMEngineCallback starts it (the r1lit "
                               "command adds it; a Trainer built in Python needs callbacks=[VLLMEngineCallback()])")
        runs = split_calls([len(p) for p in prompt_ids], n, *self.budget) if self.on_cpu else [slice(0, len(prompt_ids))]
        samples: list[tuple[list[int], list[float]]] = []
        with ThreadPoolExecutor(max_workers=min(64, max(len(prompt_ids), 1))) as pool:
            for run in runs:
                jobs = [(prompt_ids[i], None if seed is None else seed + i * n) for i in range(run.start, run.stop)]
                for answer in pool.map(lambda job: self._complete(job[0], job[1], n, sampling), jobs):
                    samples.extend(answer)
        sequences, logprobs = [s for s, _ in samples], [lp for _, lp in samples]
        return rollout_from_samples(prompt_ids, n, sequences, logprobs, self.eos_ids, self.pad_id, self.tokenizer)

    def _complete(self, prompt: list[int], seed: int | None, n: int, sampling: SamplingConfig) -> list[tuple[list[int], list[float]]]:
        body = {"model": self.model_name, "prompt": prompt, "return_token_ids": True, "skip_special_tokens": False,
                **sampling_fields(sampling, n, seed, self.eos_ids)}
        answer = request("POST", f"{self.url}/v1/completions", body, timeout=self.request_timeout)
        choices = sorted(answer["choices"], key=lambda c: c["index"])
        return [(list(c["token_ids"]), list(c["logprobs"]["token_logprobs"])) for c in choices]

    def load_weights(self, named_tensors: Iterable[tuple[str, Tensor]]) -> None:
        """Each engine's pusher sends the weights to every worker of its engine and clears that engine's prefix
        cache; other ranks only run through the iterator (under ZeRO-3 each step of it is a gather every rank must
        join, so a push that fails half-way still runs through the rest)."""
        self.wait_idle()  # a rollout asked for before this push comes from the weights it was asked with
        tensors = iter(named_tensors)
        try:
            if not self.pusher:
                return
            dtype = getattr(torch, self.dtype) if self.dtype in ("float32", "bfloat16", "float16") else None
            try:
                self.transport.send(tensors, dtype)  # the engine's own dtype: half the bytes for a bf16 engine
            except EngineError as error:
                raise EngineError(f"{error}{self.failure_hint()}") from error.__cause__
            request("POST", f"{self.url}/reset_prefix_cache", timeout=self.request_timeout)
        finally:
            for _ in tensors:
                pass

    @property
    def log_path(self) -> Path | None:
        """The started server's log file (None for an attached server, whose log its user keeps)."""
        return None if self.process is None else self.process.log_path

    def log_excerpt(self, lines: int = 20) -> str:
        """Where this rank's engine logs and the last ``lines`` lines of it (read from the log file on the ranks
        of its node that did not start it)."""
        if self.process is not None:
            state = "running" if self.process.proc.poll() is None else f"exited with code {self.process.proc.returncode}"
            return f"The engine process ({state}) logs to {self.process.log_path}; it ends:\n{self.process.log_tail(lines)}"
        found = self.engines.get(self.engine_index, {})
        if found.get("log_path"):
            return (f"The engine process on node {found['node']} logs to {found['log_path']}; it ends:\n"
                    f"{log_tail(found['log_path'], lines)}")
        return f"The engine is the vLLM server at {found.get('local_url') or self.url or self.base_url}: read its own log."

    def describe(self, index: int) -> str:
        """``vLLM engine i of n (node k, the server at URL, its log: path)``, as far as known: names an engine in
        messages on every rank."""
        found, count = self.engines.get(index, {}), self.site.count if self.site else 1
        url = found.get("remote_url") or found.get("local_url")
        parts = ([f"node {found['node']}"] if "node" in found else []) + ([f"the server at {url}"] if url else [])
        log = f"; its log: {found['log_path']}" if found.get("log_path") else ""
        return f"vLLM engine {index} of {count} ({', '.join(parts)}{log})"

    def failure_hint(self) -> str:
        named = f"{self.describe(self.engine_index)}. " if self.site is not None and self.site.count > 1 else ""
        if self.process is not None and self.process.proc.poll() is None:
            try:  # a server whose workers died closes its connections before it exits: say how it ended
                self.process.proc.wait(timeout=FAILURE_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        return "\n  " + named + self.log_excerpt()

    def close(self) -> None:
        self.stop_background()
        if self.transport is not None and self.pusher:
            self.transport.close()
        if self.process is not None:
            self.process.stop()
            self.process = None
        self.url = None
