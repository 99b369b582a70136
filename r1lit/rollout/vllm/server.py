"""Rollouts from a vLLM server in its own process: the seed's reserved-GPU topology, or a server elsewhere.

``VLLMServerEngine`` either starts vLLM's OpenAI-compatible server itself (global rank 0 does, on the first GPU
that does not train, or on the CPU where there is no GPU) or attaches to one the user runs (``base_url``), which
it then never starts or stops. Every rank sends its own prompts (token ids, per-prompt seeds) to
``/v1/completions`` and gets token ids and sampler log-probs back, so the result is the same ``Rollout`` as the
in-process engine's. Rank 0 pushes weights through a ``WeightTransport``. Written for vLLM 0.32's server routes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from r1lit.errors import ConfigError, EngineError, R1LitError
from r1lit.rollout.background import BackgroundGeneration
from r1lit.rollout.vllm.engine_process import EngineProcess, child_environment, free_port, request
from r1lit.rollout.vllm.launch import EngineLaunch, check_model_len, prefill_budget, split_calls
from r1lit.rollout.vllm.placement import physical_gpu, reserved_gpu
from r1lit.rollout.vllm.transports import GlooTransport, NCCLTransport, WeightTransport
from r1lit.rollout.types import Rollout, SamplingConfig, rollout_from_samples
from r1lit.rollout.vllm.base import CPU_KV_CACHE_BYTES, GENERATION_CONFIG, VLLMSettings, sampling_fields
from r1lit.rollout.vllm.version import check_vllm_version
from r1lit.rollout.vllm.worker import PROTOCOL

SERVED_NAME = "r1lit-policy"


class VLLMServerEngine(BackgroundGeneration, VLLMSettings):
    """vLLM in its own process (``reserved``): started by rank 0 on the spare GPU, or attached by ``base_url``."""

    def __init__(
        self,
        base_url: str | None = None,
        transport: WeightTransport | None = None,
        startup_timeout: float = 900.0,
        request_timeout: float = 600.0,
        env: dict[str, str] | None = None,
        **settings,
    ):
        """
        Args:
            base_url: attach to a vLLM server that is already running (e.g. ``http://gen-node:8000``) instead of
                starting one; it must run with ``VLLM_SERVER_DEV_MODE=1``, ``--worker-extension-cls
                r1lit.rollout.vllm.worker.R1LitWorkerExtension``, ``--logprobs-mode processed_logprobs`` and
                ``--weight-transfer-config '{"backend": "nccl"}'`` (``"r1lit_gloo"`` for a CPU server), and serve
                the policy's starting weights. The trainer checks its health, model and version at start and never
                stops it. The engine settings below then describe that server and are not applied.
            transport: how rank 0 pushes weights through vLLM's weight-transfer API: ``NCCLTransport`` (GPUs) or
                ``GlooTransport`` (the same over gloo, from the CPU). None = NCCL where CUDA is available, else gloo.
                An attached server must have been started with the matching ``--weight-transfer-config``.
            startup_timeout: seconds to wait for a started server to answer (or for an attached one's health check).
            request_timeout: seconds one generation or weight-push request may take before the step fails.
            env: extra environment for the server process (e.g. ``VLLM_CPU_OMP_THREADS_BIND``).
            settings: the vLLM engine settings (dtype, memory, seed; see ``VLLMEngine``).
        """
        super().__init__(**settings)
        if startup_timeout <= 0 or request_timeout <= 0:
            raise ConfigError("VLLMServerEngine startup_timeout and request_timeout must be > 0 seconds")
        self.base_url = base_url.rstrip("/") if base_url else None
        self.transport = transport
        self.startup_timeout, self.request_timeout = startup_timeout, request_timeout
        self.env = dict(env or {})
        self.process: EngineProcess | None = None
        self.url: str | None = None  # where this rank sends its prompts
        self.model_name = SERVED_NAME
        self.budget, self.on_cpu, self.pusher = (0, 0), False, False

    # ---- start: rank 0 starts or checks the server; every rank learns where it is ----------------------------

    def start(self, launch: EngineLaunch) -> None:
        """Every rank calls this together: rank 0 brings the server up (or checks the attached one) and tells the
        others its address; a failure on rank 0 fails every rank with the same message instead of a hang."""
        self.pusher = launch.global_rank == 0
        outcome: dict = {}
        if self.pusher:
            try:
                outcome = {"ok": self._bring_up(launch)}
            except R1LitError as error:
                outcome = {"error": (type(error).__name__, str(error))}
            except Exception as error:  # noqa: BLE001 - reported to every rank below
                outcome = {"error": ("EngineError", f"starting the vLLM server failed: {type(error).__name__}: {error}")}
        if launch.world_size > 1 and dist.is_available() and dist.is_initialized():
            box = [outcome]
            dist.broadcast_object_list(box, src=0)
            outcome = box[0]
        if "error" in outcome:
            kind, message = outcome["error"]
            self.close()
            raise (ConfigError if kind == "ConfigError" else EngineError)(message)
        found = outcome["ok"]
        self.model_name, self.budget, self.on_cpu = found["model_name"], tuple(found["budget"]), found["on_cpu"]
        same_node = launch.global_rank // max(launch.training_devices, 1) == 0
        self.url = found["local_url"] if same_node else found["remote_url"]
        if self.on_cpu:  # ranks share one prefill budget (see prefill_budget)
            self.budget = (self.budget[0] // launch.world_size, max(self.budget[1] // launch.world_size, 1))

    def _bring_up(self, launch: EngineLaunch) -> dict:
        if self.transport is None:
            self.transport = NCCLTransport() if torch.cuda.is_available() else GlooTransport()
        if self.base_url is None:
            port = free_port()
            self.process = self._spawn(launch, port)
            local_url = f"http://127.0.0.1:{port}"
            self.process.wait_ready(local_url, self.startup_timeout)
            remote_url = f"http://{os.environ.get('MASTER_ADDR') or socket.gethostname()}:{port}"
        else:
            local_url = remote_url = self.base_url
            try:
                request("GET", f"{self.base_url}/health", timeout=min(self.startup_timeout, 30))
            except (OSError, RuntimeError) as error:
                raise EngineError(f"no vLLM server answers at base_url={self.base_url} ({error}); start it first "
                                  "or fix base_url") from None
        info = self._check_server(local_url, launch)
        self.transport.connect(local_url, self.request_timeout)
        return {"local_url": local_url, "remote_url": remote_url, **info}

    def _spawn(self, launch: EngineLaunch, port: int) -> EngineProcess:
        cuda_visible = None
        if torch.cuda.is_available():
            cuda_visible = physical_gpu(reserved_gpu(torch.cuda.device_count(), launch.training_gpus or launch.training_devices))
        args = [
            "--model", launch.model_path, "--tokenizer", launch.model_path, "--served-model-name", SERVED_NAME,
            "--dtype", self.dtype,
            "--max-model-len", str(check_model_len(self.max_model_len, launch.max_prompt_length, launch.max_tokens)),
            "--gpu-memory-utilization", str(self.gpu_memory_utilization or 0.9), "--seed", str(self.seed),
            "--logprobs-mode", "processed_logprobs", "--generation-config", GENERATION_CONFIG,
            "--worker-extension-cls", "r1lit.rollout.vllm.worker.R1LitWorkerExtension",
            "--host", "0.0.0.0" if launch.world_size > launch.training_devices else "127.0.0.1", "--port", str(port),
            "--enable-prefix-caching" if self.enable_prefix_caching else "--no-enable-prefix-caching",
            "--disable-uvicorn-access-log",
        ]
        if self.enforce_eager:
            args.append("--enforce-eager")
        kv_bytes = self.kv_cache_memory_bytes or (CPU_KV_CACHE_BYTES if cuda_visible is None else None)
        if kv_bytes is not None:
            args += ["--kv-cache-memory-bytes", str(kv_bytes)]
        if cuda_visible is None:  # vLLM's CPU build: every rank's prompts prefilled whole (see prefill_budget)
            tokens, seqs = prefill_budget(launch.sequences_per_call * launch.world_size, launch.max_prompt_length)
            args += ["--max-num-batched-tokens", str(tokens), "--max-num-seqs", str(seqs)]
        args += self.transport.server_args()
        log_dir = Path(launch.log_dir) if launch.log_dir else Path.cwd()
        return EngineProcess(args, child_environment(self.env, cuda_visible), log_dir / "vllm_server.log")

    def _check_server(self, url: str, launch: EngineLaunch) -> dict:
        """Version, r1lit's worker extension, and the model: what makes pushes and log-probs mean anything."""
        version = str(request("GET", f"{url}/version", timeout=30).get("version", "?"))
        check_vllm_version(version, f"the vLLM server at {url}")
        try:
            info = request("POST", f"{url}/collective_rpc", {"method": "r1lit_info"}, timeout=60)["results"][0]
        except (RuntimeError, KeyError, IndexError, TypeError) as error:
            raise ConfigError(
                f"the vLLM server at {url} lacks r1lit's worker extension or the dev routes ({error}); start it with "
                "VLLM_SERVER_DEV_MODE=1 and --worker-extension-cls r1lit.rollout.vllm.worker.R1LitWorkerExtension "
                "--logprobs-mode processed_logprobs"
            ) from None
        if info.get("protocol") != PROTOCOL:
            raise ConfigError(f"the vLLM server at {url} runs another r1lit version (worker protocol "
                              f"{info.get('protocol')}, this trainer {PROTOCOL}); run it from the trainer's environment")
        if not same_model(info["model"], launch.model_path):
            raise ConfigError(
                f"the vLLM server at {url} serves {info['model']!r}, but the policy is {launch.model_path!r}: its "
                "log-probs and weight pushes would not fit. Start the server with --model "
                f"{launch.model_path}, or set base_url to a server that serves it"
            )
        if info.get("logprobs_mode") != "processed_logprobs":
            raise ConfigError(f"the vLLM server at {url} returns {info.get('logprobs_mode')} log-probs; start it with "
                              "--logprobs-mode processed_logprobs (temperature-scaled, as the trainer computes them)")
        needed = launch.needed_len
        if info["max_model_len"] < needed:
            raise ConfigError(f"the vLLM server at {url} has max_model_len={info['max_model_len']}, shorter than "
                              f"data.max_prompt_length + model.sampling.max_tokens = {needed}")
        served = request("GET", f"{url}/v1/models", timeout=30)["data"][0]["id"]
        return {"model_name": served, "budget": [info["max_num_batched_tokens"], info["max_num_seqs"]],
                "on_cpu": info["device"] == "cpu"}

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
        """Rank 0 sends the weights and clears vLLM's prefix cache; other ranks only run through the iterator
        (under ZeRO-3 each step of it is a gather every rank must join)."""
        self.wait_idle()  # a rollout asked for before this push comes from the weights it was asked with
        if not self.pusher:
            for _ in named_tensors:
                pass
            return
        dtype = getattr(torch, self.dtype) if self.dtype in ("float32", "bfloat16", "float16") else None
        try:
            self.transport.send(named_tensors, dtype)  # the engine's own dtype: half the bytes for a bf16 engine
        except EngineError as error:
            raise EngineError(f"{error}{self.failure_hint()}") from error.__cause__
        request("POST", f"{self.url}/reset_prefix_cache", timeout=self.request_timeout)

    @property
    def log_path(self) -> Path | None:
        """The started server's log file (None for an attached server, whose log its user keeps)."""
        return None if self.process is None else self.process.log_path

    def log_excerpt(self, lines: int = 20) -> str:
        """Where the engine logs and the last ``lines`` lines of it."""
        if self.process is None:
            return f"The engine is the vLLM server at {self.base_url or self.url}: read its own log."
        state = "running" if self.process.proc.poll() is None else f"exited with code {self.process.proc.returncode}"
        return f"The engine process ({state}) logs to {self.process.log_path}; it ends:\n{self.process.log_tail(lines)}"

    def failure_hint(self) -> str:
        return "\n  " + self.log_excerpt()

    def close(self) -> None:
        self.stop_background()
        if self.transport is not None and self.pusher:
            self.transport.close()
        if self.process is not None:
            self.process.stop()
            self.process = None
        self.url = None


def same_model(served: str, wanted: str) -> bool:
    """Local folders compare by their real path; hub ids by name."""
    if os.path.exists(served) and os.path.exists(wanted):
        return os.path.realpath(served) == os.path.realpath(wanted)
    return served.rstrip("/") == wanted.rstrip("/")
