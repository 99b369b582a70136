"""Parse-time checks the ``r1lit`` command runs on a whole config before anything loads, each naming the fix: settings
that only fail in combination (the engine and the devices, DeepSpeed and the accelerator, lengths)."""

from __future__ import annotations

import importlib
import os

from r1lit.errors import ConfigError

__all__ = ["ConfigError", "check_combinations", "check_engine_setup"]


def check_engine_setup(config, cuda_available: bool, cuda_devices: int) -> None:
    """The engine is chosen once, in ``model.engine``; a vLLM engine must fit the prompt + completion, and get a GPU
    of its own or a share that leaves the trainer room. (The CLI adds the callback that runs it.)"""
    from r1lit.rollout.vllm.base import VLLMSettings
    from r1lit.rollout.vllm.in_process import VLLMEngine
    from r1lit.rollout.vllm.launch import check_model_len
    from r1lit.rollout.vllm.placement import check_colocated_memory, reserved_gpu

    model, data, trainer = config.model, config.data, config.trainer
    engine = model.engine
    engine_cls = _import(engine.class_path) if getattr(engine, "class_path", None) else None
    if engine_cls is None or not issubclass(engine_cls, VLLMSettings):
        return
    args = engine.init_args
    check_model_len(getattr(args, "max_model_len", None), data.max_prompt_length, model.sampling.max_tokens)
    on_gpu = cuda_available and trainer.accelerator not in ("cpu",)
    if issubclass(engine_cls, VLLMEngine):
        check_colocated_memory(getattr(args, "gpu_memory_utilization", 0.7), on_gpu)
    elif on_gpu and getattr(args, "base_url", None) is None and isinstance(trainer.devices, (int, list)) and node_rank() == 0:
        reserved_gpu(cuda_devices, trainer.devices)  # node 0 (global rank 0's) starts the engine on its spare GPU


def node_rank() -> int:
    """This machine's node index as the common launchers set it (0 when launched by hand)."""
    for name in ("NODE_RANK", "GROUP_RANK", "SLURM_NODEID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


DEEPSPEED_CLASSES = {"lightning.pytorch.strategies.DeepSpeedStrategy", "lightning.pytorch.strategies.deepspeed.DeepSpeedStrategy"}


def check_deepspeed_device(strategy, accelerator, cuda_available: bool) -> None:
    """Lightning's DeepSpeedStrategy needs CUDA; say so when the config is read, not after the model loads.
    (Subclasses are left alone: the tests run DeepSpeed on CPU through one.)"""
    asked = (isinstance(strategy, str) and strategy.startswith("deepspeed")) or getattr(strategy, "class_path", None) in DEEPSPEED_CLASSES
    if asked and (accelerator == "cpu" or not cuda_available):
        where = "trainer.accelerator is cpu" if accelerator == "cpu" else "no CUDA GPU is visible (torch.cuda.is_available() is False)"
        raise ConfigError(
            f"trainer.strategy asks for DeepSpeed, which needs CUDA GPUs, but {where}. On a CPU machine use "
            "configs/smollm2-cpu.yaml or set trainer.strategy: auto (and trainer.accelerator: cpu); for the "
            "DeepSpeed recipes, run on a GPU machine with a CUDA build of torch (make install TORCH=torch)"
        )


def check_combinations(config, cuda_available: bool, cuda_devices: int = 0) -> None:
    """Every check above that a parsed ``r1lit fit`` config can fail, before anything is loaded."""
    trainer = config.trainer
    check_deepspeed_device(trainer.strategy, trainer.accelerator, cuda_available)
    check_engine_setup(config, cuda_available, cuda_devices)


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)
