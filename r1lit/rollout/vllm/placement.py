"""Which GPUs the reserved engine gets, and the checks that keep an engine off a training GPU.

vLLM (0.10 and later) has no ``device=`` argument: an engine process uses the GPUs of its own
``CUDA_VISIBLE_DEVICES`` (``cuda:0`` for one worker; data and tensor parallel workers take the next ones). So an
engine's GPUs are chosen by the physical ids put into the child's environment.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from r1lit.errors import ConfigError


def reserved_gpus(visible_gpus: int, training_devices: int | Sequence[int], count: int) -> list[int]:
    """Indices (among this node's visible GPUs) of the ``count`` GPUs kept for generation: the first ``count``
    that do not train. ``training_devices`` is Lightning's ``trainer.devices``: a count n (GPUs 0…n−1) or a list
    of indices. ``count`` is K = data_parallel_size × tensor_parallel_size of the reserved engine."""
    if count < 1:
        raise ConfigError(f"an engine needs at least one GPU, not {count}: data_parallel_size and "
                          "tensor_parallel_size must each be >= 1")
    training = set(range(training_devices)) if isinstance(training_devices, int) else {int(d) for d in training_devices}
    free = [gpu for gpu in range(visible_gpus) if gpu not in training]
    if len(free) >= count:
        return free[:count]
    fixes = [f"lower model.engine.init_args data_parallel_size × tensor_parallel_size (K = {count})"] if count > 1 else []
    fixes += ["attach to a server elsewhere with base_url", "generate in process with model.engine: VLLMEngine (colocate)"]
    if isinstance(training_devices, int):
        if visible_gpus > count:
            fixes.insert(0, f"set trainer.devices={visible_gpus - count} (visible − K = {visible_gpus} − {count})")
        needs = (f"{visible_gpus} visible GPU(s) on this node, trainer.devices={training_devices} train, so "
                 f"{training_devices} + {count} = {training_devices + count} are needed")
    else:
        fixes.insert(0, "list fewer GPUs in trainer.devices")
        trains = len(training & set(range(visible_gpus)))
        needs = (f"trainer.devices={sorted(training)} trains {trains} of the {visible_gpus} visible GPU(s) on this "
                 f"node and leaves {len(free)} free, {count} needed")
    raise ConfigError(f"VLLMServerEngine needs {count} GPU(s) per node that do not train: {needs}. To fix: "
                      f"{', '.join(fixes[:-1])}, or {fixes[-1]}")


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


def physical_gpus(indices: Sequence[int], cuda_visible_devices: str | None = None) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` value for a child that gets this process's visible GPUs ``indices``, in order
    (``physical_gpu`` of each, comma-separated)."""
    return ",".join(physical_gpu(index, cuda_visible_devices) for index in indices)


GIB = 1 << 30
TRAINER_HEADROOM, TRAINER_FIXED_GIB = 1.25, 4.0  # activations, the log-prob pass's logits, CUDA context
ENGINE_FIXED_GIB = 2.0  # the smallest useful KV cache and vLLM's own buffers


def training_bytes_per_parameter(zero_stage: int, ranks: int) -> float:
    """What one training rank keeps per parameter with AdamW under bf16: weights (2 B), gradients (2 B), fp32
    gradient accumulation (4 B), fp32 master weights (4 B) and Adam's two moments (8 B). ZeRO-1 shards the master
    weights and moments over the ranks, ZeRO-2 the gradients too, ZeRO-3 the weights too; without DeepSpeed
    (``zero_stage`` 0: DDP with bf16-mixed) fp32 weights, gradients and moments are all whole (16 B)."""
    n = max(ranks, 1)
    if zero_stage <= 0:
        return 16.0
    if zero_stage == 1:
        return 2 + 2 + 4 + 12 / n
    if zero_stage == 2:
        return 2 + (2 + 4 + 12) / n
    return (2 + 2 + 4 + 12) / n


def colocated_budget(parameters: int, zero_stage: int, ranks: int, gpu_bytes: int) -> tuple[float, float, str]:
    """``(lowest, highest, arithmetic)`` for a colocated engine's ``gpu_memory_utilization``: the engine needs its
    bf16 weights plus a small KV cache; the trainer needs its state (``training_bytes_per_parameter``) with
    headroom. ``arithmetic`` spells the numbers out for messages and the GPU check."""
    gpu_gib, params_b = gpu_bytes / GIB, parameters / 1e9
    per_param = training_bytes_per_parameter(zero_stage, ranks)
    trainer_gib = parameters * per_param / GIB * TRAINER_HEADROOM + TRAINER_FIXED_GIB
    engine_gib = parameters * 2 / GIB + ENGINE_FIXED_GIB
    lowest, highest = engine_gib / gpu_gib, min(1.0 - trainer_gib / gpu_gib, 0.9)
    arithmetic = (
        f"{params_b:.2f}B parameters on a {gpu_gib:.0f} GiB GPU: training (ZeRO stage {zero_stage}, {max(ranks, 1)} "
        f"rank(s)) keeps {per_param:.1f} B/parameter = {parameters * per_param / GIB:.1f} GiB, × {TRAINER_HEADROOM} + "
        f"{TRAINER_FIXED_GIB:.0f} GiB = {trainer_gib:.1f} GiB; the engine needs {engine_gib:.1f} GiB (bf16 weights + "
        f"{ENGINE_FIXED_GIB:.0f} GiB), so gpu_memory_utilization must lie in [{lowest:.2f}, {highest:.2f}]"
    )
    return lowest, highest, arithmetic


def colocated_memory_utilization(wanted: float | None, parameters: int, zero_stage: int, ranks: int,
                                 gpu_bytes: int) -> float:
    """The share of the GPU a colocated engine takes: ``wanted``, or the largest that leaves training its need
    (None); refused, with the arithmetic, when it would leave training too little or no share fits both."""
    lowest, highest, arithmetic = colocated_budget(parameters, zero_stage, ranks, gpu_bytes)
    if highest < lowest:
        raise ConfigError(
            f"a colocated vLLM engine does not fit beside training: {arithmetic}, an empty range. Use more ranks "
            "(ZeRO shards the optimizer state), configs/deepspeed/zero2_offload.json (optimizer state in CPU "
            "memory), or model.engine: VLLMServerEngine on a GPU of its own"
        )
    if wanted is None:
        return round(highest, 2)
    if wanted > highest:
        raise ConfigError(
            f"VLLMEngine gpu_memory_utilization={wanted} leaves training too little: {arithmetic}. Lower it, or leave "
            "it unset to take the largest share that fits"
        )
    return wanted


def check_colocated_memory(gpu_memory_utilization: float | None, on_gpu: bool) -> None:
    """At parse time, before the model's size is known: an engine in the training process must leave the
    trainer at least 10 % (the budget above is checked when the engine starts)."""
    if on_gpu and gpu_memory_utilization is not None and gpu_memory_utilization >= 0.9:
        raise ConfigError(
            f"VLLMEngine gpu_memory_utilization={gpu_memory_utilization} on a GPU that also trains leaves the trainer "
            "less than 10 % of it: the first step would run out of memory. Leave it unset (the engine then takes "
            "what the model's size and ZeRO stage leave), or to give vLLM a whole GPU, use model.engine: "
            "VLLMServerEngine (a reserved GPU)"
        )
