"""Parse-time checks the ``r1lit`` command runs on a whole config before anything loads, each naming the fix: settings
that only fail in combination (the engine and the devices, DeepSpeed and the accelerator, lengths)."""

from __future__ import annotations

import importlib
import os

from r1lit.errors import ConfigError

__all__ = ["ConfigError", "check_combinations", "check_engine_setup", "check_reserved_engine"]


def check_engine_setup(config, cuda_available: bool, cuda_devices: int) -> None:
    """The engine is chosen once, in ``model.engine``; a vLLM engine must fit the prompt + completion, and get GPUs
    of its own or a share that leaves the trainer room. (The CLI adds the callback that runs it.)"""
    from r1lit.rollout.vllm.base import VLLMSettings, check_block_size
    from r1lit.rollout.vllm.in_process import VLLMEngine
    from r1lit.rollout.vllm.launch import check_model_len
    from r1lit.rollout.vllm.placement import check_colocated_memory

    model, data, trainer = config.model, config.data, config.trainer
    engine = model.engine
    engine_cls = _import(engine.class_path) if getattr(engine, "class_path", None) else None
    if engine_cls is None or not issubclass(engine_cls, VLLMSettings):
        return
    args = engine.init_args
    check_model_len(getattr(args, "max_model_len", None), data.max_prompt_length, model.sampling.max_tokens)
    on_gpu = cuda_available and trainer.accelerator not in ("cpu",)
    check_block_size(getattr(args, "block_size", None), on_cpu=not on_gpu)
    if issubclass(engine_cls, VLLMEngine):
        check_colocated_memory(getattr(args, "gpu_memory_utilization", 0.7), on_gpu)
    else:
        check_reserved_engine(args, trainer, on_gpu, cuda_devices, node_rank())


def check_reserved_engine(args, trainer, on_gpu: bool, cuda_devices: int, node: int) -> None:
    """``VLLMServerEngine``: K = data_parallel_size × tensor_parallel_size GPUs per engine, each ≥ 1; attached
    servers (``base_url``) one per node with ``engine_per_node``, one for the job without; a started engine's K GPUs
    free on every node that starts one (``engine_per_node``: each node checks its own, as each runs the command;
    else node 0 only)."""
    from r1lit.rollout.vllm.placement import reserved_gpus

    dp, tp = getattr(args, "data_parallel_size", 1), getattr(args, "tensor_parallel_size", 1)
    for name, value in (("data_parallel_size", dp), ("tensor_parallel_size", tp)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"VLLMServerEngine {name}={value!r} must be an integer >= 1 (the engine takes "
                              "data_parallel_size × tensor_parallel_size GPUs per node; 1 and 1 = one GPU)")
    per_node, nodes = getattr(args, "engine_per_node", True), getattr(trainer, "num_nodes", 1) or 1
    base_url = getattr(args, "base_url", None)
    if isinstance(base_url, (list, tuple)):
        if per_node and len(base_url) != nodes:
            raise ConfigError(
                f"VLLMServerEngine base_url lists {len(base_url)} server(s) but trainer.num_nodes={nodes}: with "
                f"engine_per_node each node's ranks use the server at its own node's position in the list. Give "
                f"{nodes} URL(s), one per node, or one URL (a string) for one server that every node uses"
            )
        if not per_node and len(base_url) != 1:
            raise ConfigError(
                f"VLLMServerEngine base_url lists {len(base_url)} servers but engine_per_node is false (one engine "
                "for the whole job): give one URL, or set engine_per_node: true with one URL per node"
            )
    if base_url or not on_gpu or not (per_node or node == 0):
        return
    devices = training_devices(trainer.devices, cuda_devices)
    if devices is None:
        return
    try:
        reserved_gpus(cuda_devices, devices, dp * tp)
    except ConfigError as error:
        if nodes > 1 and per_node:
            raise ConfigError(f"node {node}: {error}; or, if only node 0 has spare GPUs, set engine_per_node: false "
                              "(one engine on node 0 for the whole job)") from None
        raise


def training_devices(devices, visible: int) -> int | list[int] | None:
    """Lightning's ``trainer.devices`` as the GPUs it trains on: a count or a list of indices; ``"auto"`` and -1
    take every visible GPU; a string is read as Lightning reads it (``"2"`` a count, ``"0,1"`` indices). None when it
    names no GPUs this check can place."""
    if isinstance(devices, str):
        text = devices.strip()
        if text in ("auto", "-1"):
            return visible
        if "," in text:
            return [int(part) for part in text.split(",") if part.strip()]
        return int(text) if text.isdigit() else None
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return visible if devices == -1 else devices
    if isinstance(devices, (list, tuple)):
        return [int(d) for d in devices]
    return None


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
