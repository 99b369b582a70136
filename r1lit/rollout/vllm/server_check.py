"""The checks a vLLM server passes before the trainer trusts it (started by r1lit or attached): vLLM's version,
r1lit's worker extension and protocol, the model, the log-prob mode, the context length and the worker count
(``GET /get_world_size``: tensor × pipeline × data parallel, the size of its weight-transfer group less the
trainer). Written for vLLM 0.32's server routes."""

from __future__ import annotations

import os

from r1lit.errors import ConfigError, EngineError
from r1lit.rollout.vllm.engine_process import request
from r1lit.rollout.vllm.launch import EngineLaunch
from r1lit.rollout.vllm.version import check_vllm_version
from r1lit.rollout.vllm.worker import PROTOCOL

SERVED_NAME = "r1lit-policy"


def check_server(url: str, launch: EngineLaunch, workers_started: int | None) -> dict:
    """Version, r1lit's worker extension, the model, its lengths and its workers: what makes pushes and log-probs
    mean anything. ``workers_started``: data × tensor parallel size of a server r1lit started (None: attached).
    Returns the served name, the prefill budget, whether it runs on CPU and its worker count."""
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
    workers = int(request("GET", f"{url}/get_world_size", timeout=30)["world_size"])  # TP × PP × DP
    if workers_started is not None and workers != workers_started:
        raise EngineError(f"the vLLM server at {url} reports {workers} worker(s), but it was started with "
                          f"data_parallel_size × tensor_parallel_size = {workers_started}; read its log")
    return {"model_name": served, "budget": [info["max_num_batched_tokens"], info["max_num_seqs"]],
            "on_cpu": info["device"] == "cpu", "workers": workers}


def same_model(served: str, wanted: str) -> bool:
    """Local folders compare by their real path; hub ids by name."""
    if os.path.exists(served) and os.path.exists(wanted):
        return os.path.realpath(served) == os.path.realpath(wanted)
    return served.rstrip("/") == wanted.rstrip("/")
