"""Which GPU the reserved engine gets, and the checks that keep an engine off a training GPU.

vLLM (0.10 and later) has no ``device=`` argument: an engine process uses ``cuda:0`` of its own
``CUDA_VISIBLE_DEVICES``. So the engine's GPU is chosen by the physical id put into the child's environment.
"""

from __future__ import annotations

import os

from r1lit.errors import ConfigError


def reserved_gpu(visible_gpus: int, training_devices: int) -> int:
    """Index (among the visible GPUs) of the GPU kept for generation: the first one not used for training."""
    if visible_gpus < training_devices + 1:
        raise ConfigError(
            f"VLLMServerEngine needs a GPU that does not train: {visible_gpus} visible GPU(s) on this node, "
            f"trainer.devices={training_devices}, so {training_devices} + 1 = {training_devices + 1} are needed. Set "
            f"trainer.devices={max(visible_gpus - 1, 1)} (N − 1), attach to a server elsewhere with base_url, or "
            "generate in process with model.engine: VLLMEngine (colocate)"
        )
    return training_devices


def physical_gpu(index: int, cuda_visible_devices: str | None = None) -> str:
    """The id to put in a child's ``CUDA_VISIBLE_DEVICES`` for visible GPU ``index`` of this process: the
    index itself, or the index-th entry of this process's own ``CUDA_VISIBLE_DEVICES``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if cuda_visible_devices is None else cuda_visible_devices
    if not visible:
        return str(index)
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    if index >= len(ids):
        raise ConfigError(f"CUDA_VISIBLE_DEVICES={visible!r} lists {len(ids)} GPU(s); GPU {index} is not among them")
    return ids[index]


def check_colocated_memory(gpu_memory_utilization: float, on_gpu: bool) -> None:
    """An engine in the training process shares its GPU with the policy, its gradients and optimizer state."""
    if on_gpu and gpu_memory_utilization >= 0.9:
        raise ConfigError(
            f"VLLMEngine gpu_memory_utilization={gpu_memory_utilization} on a GPU that also trains leaves the trainer "
            "less than 10 % of it: the first step would run out of memory. Colocated engines usually take 0.3–0.5; "
            "to give vLLM a whole GPU, use model.engine: VLLMServerEngine (a reserved GPU)"
        )
