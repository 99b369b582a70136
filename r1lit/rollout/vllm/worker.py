"""Code that runs inside vLLM's worker (in process, or in a vLLM server started with
``--worker-extension-cls r1lit.rollout.vllm.worker.R1LitWorkerExtension``). Written for vLLM 0.32's ``Worker``:
``reload_weights(weights_iterator=...)`` and ``model_runner.model``."""

from __future__ import annotations

import sys

PROTOCOL = 2  # bumped when the methods below change; the trainer checks it at start


def register_cpu_backend() -> None:
    """Inside vLLM's worker (vLLM already imported), add r1lit's gloo weight-transfer backend to its registry before
    the worker builds its weight-transfer engine; a trainer importing this module for ``PROTOCOL`` stays light."""
    if "vllm" in sys.modules:
        from r1lit.rollout.vllm.gloo_transfer import register

        register()


register_cpu_backend()


def refresh_tied_lm_head(worker) -> None:
    """``refresh_lm_head`` of the worker's model (a ``collective_rpc`` target)."""
    refresh_lm_head(worker.model_runner.model)


def refresh_lm_head(model) -> None:
    """A tied lm_head shares the embedding's storage but some backends keep a processed copy (repacked for
    oneDNN on CPU) that reloading the embedding does not rebuild."""
    lm_head = getattr(model, "lm_head", None)
    method = getattr(lm_head, "quant_method", None)
    if lm_head is not None and method is not None and hasattr(method, "process_weights_after_loading"):
        method.process_weights_after_loading(lm_head)


class R1LitWorkerExtension:
    """Mixed into vLLM's worker class by ``worker_extension_cls``; its methods are callable through the server's
    ``/collective_rpc`` route (``VLLM_SERVER_DEV_MODE=1``), whose arguments are strings."""

    def r1lit_info(self) -> dict:
        """What the trainer checks before it trusts this server: protocol, model, lengths, budget, device."""
        from vllm.platforms import current_platform

        model, scheduler = self.vllm_config.model_config, self.vllm_config.scheduler_config
        return {
            "protocol": PROTOCOL,
            "model": model.model,
            "max_model_len": model.max_model_len,
            "logprobs_mode": str(model.logprobs_mode),
            "max_num_batched_tokens": scheduler.max_num_batched_tokens,
            "max_num_seqs": scheduler.max_num_seqs,
            "device": current_platform.device_type,
        }
