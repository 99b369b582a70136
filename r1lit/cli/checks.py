"""Parse-time checks the ``r1lit`` command runs on a whole config before anything loads, each naming the fix: settings
that only fail in combination (engine and callbacks, devices, DeepSpeed and the accelerator, lengths)."""

from __future__ import annotations

import importlib
import os

from r1lit.errors import ConfigError

__all__ = ["ConfigError", "check_combinations", "check_engine_length", "check_engine_setup"]


def check_engine_length(max_model_len: int | None, max_prompt_length: int, max_tokens: int) -> None:
    """A vLLM engine must hold the longest prompt the data lets through plus the longest completion; without its
    own ``max_model_len`` it is sized to exactly that at start."""
    needed = max_prompt_length + max_tokens
    if max_model_len is not None and max_model_len < needed:
        raise ConfigError(
            f"VLLMEngine max_model_len={max_model_len} is shorter than data.max_prompt_length + "
            f"model.sampling.max_tokens = {max_prompt_length} + {max_tokens} = {needed}; raise max_model_len to "
            f"{needed} (or leave it unset), or lower one of the two"
        )


def check_engine_setup(config, cuda_available: bool, cuda_devices: int) -> None:
    """The engine is chosen once, in ``model.engine``; a vLLM engine needs the ``VLLMRollout`` callback that runs
    its life, fits the prompt + completion, and gets a GPU of its own or a share that leaves the trainer room."""
    from r1lit.callbacks.vllm_engine import VLLMRollout
    from r1lit.rollout.vllm.placement import check_colocated_memory, reserved_gpu
    from r1lit.rollout.vllm.base import VLLMSettings
    from r1lit.rollout.vllm.in_process import VLLMEngine

    model, data, trainer = config.model, config.data, config.trainer
    engine = model.engine
    engine_cls = _import(engine.class_path) if getattr(engine, "class_path", None) else None
    is_vllm = engine_cls is not None and issubclass(engine_cls, VLLMSettings)
    callbacks = [c for c in (trainer.callbacks or []) if isinstance(getattr(c, "class_path", None), str)]
    has_rollout = any(issubclass(_import(c.class_path), VLLMRollout) for c in callbacks)
    if is_vllm and not has_rollout:
        raise ConfigError(
            f"model.engine is {engine_cls.__name__}, which must be started, synced and stopped by the VLLMRollout "
            "callback: add `- class_path: VLLMRollout` to trainer.callbacks"
        )
    if has_rollout and not is_vllm:
        raise ConfigError(
            "trainer.callbacks has VLLMRollout but model.engine is "
            f"{engine_cls.__name__ if engine_cls else 'unset (HFEngine)'}; choose the vLLM engine in model.engine "
            "(class_path: VLLMEngine or VLLMServerEngine), or drop the callback"
        )
    if not is_vllm:
        return
    args = engine.init_args
    check_engine_length(getattr(args, "max_model_len", None), data.max_prompt_length, model.sampling.max_tokens)
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
