"""What GRPO's manual optimisation must do differently under Lightning's DeepSpeed strategy.

Lightning runs DeepSpeed with ``gradient_accumulation_steps = 1`` under manual optimisation, so every backward is an
accumulation boundary and ZeRO-1/2 reduces and replaces the partitioned gradient each time: only the last
micro-batch would count. Marking the boundary ourselves makes n micro-batches add up to one update. Gradient
clipping happens inside DeepSpeed's step, so the module's ``max_grad_norm`` is written into the DeepSpeed config.
Under ZeRO-3 each rank holds a shard of every parameter; pushing weights to an engine gathers them one at a time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from r1lit.errors import ConfigError


def deepspeed_engine(trainer) -> object | None:
    """The DeepSpeedEngine wrapping the module, or None when the strategy is not DeepSpeed."""
    strategy = getattr(trainer, "strategy", None)
    model = getattr(strategy, "model", None)
    return model if type(model).__name__ == "DeepSpeedEngine" else None


def is_deepspeed(strategy) -> bool:
    from lightning.pytorch.strategies import DeepSpeedStrategy

    return isinstance(strategy, DeepSpeedStrategy)


def configure_deepspeed(strategy, max_grad_norm: float | None, micro_batch_size: int) -> None:
    """Put the module's clipping and micro-batch size into the DeepSpeed config before the engine is built.

    One place decides clipping: a DeepSpeed config whose ``gradient_clipping`` disagrees with ``model.max_grad_norm``
    is an error rather than a silent override.
    """
    config = strategy.config
    wanted = float(max_grad_norm) if max_grad_norm is not None else 0.0
    given = config.get("gradient_clipping")
    if given is not None and float(given) != wanted:
        raise ConfigError(
            f"the DeepSpeed config sets gradient_clipping={given} but model.max_grad_norm={max_grad_norm}; "
            "set the norm once, in model.max_grad_norm, and drop gradient_clipping from the DeepSpeed config"
        )
    config["gradient_clipping"] = wanted
    config.setdefault("train_micro_batch_size_per_gpu", micro_batch_size)  # for DeepSpeed's throughput logs only


REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def resolve_deepspeed_json(path: str, config_files: list[str]) -> str:
    """The file a recipe's ``strategy.init_args.config`` names, found from any working directory: relative to
    the YAML files that were read (the last first), then to r1lit's repository (``configs/deepspeed/…``), then
    as given. An absolute or missing path is returned unchanged (Lightning reports a missing one)."""
    if os.path.isabs(path):
        return path
    roots = [os.path.dirname(os.path.abspath(str(f))) for f in reversed(config_files)] + [REPOSITORY_ROOT]
    for root in roots:
        candidate = os.path.join(root, path)
        if os.path.isfile(candidate):
            return candidate
    return path


def mark_accumulation_boundary(engine, last: bool) -> None:
    """Before a backward: tell DeepSpeed (None = not DeepSpeed) whether it ends the update or accumulates."""
    if engine is not None:
        engine.set_gradient_accumulation_boundary(last)


def zero_stage(trainer) -> int:
    strategy = getattr(trainer, "strategy", None)
    if strategy is None or not is_deepspeed(strategy):
        return 0
    return int((strategy.config or {}).get("zero_optimization", {}).get("stage", 0))


def full_parameters(model: nn.Module, sharded: bool) -> Iterator[tuple[str, Tensor]]:
    """(name, full tensor) for every parameter. With ``sharded`` (ZeRO-3) each parameter is gathered from all ranks
    and copied out, so every rank must run through this iterator in the same order."""
    if not sharded:
        yield from model.named_parameters()
        return
    import deepspeed

    for name, param in model.named_parameters():
        with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
            yield name, param.data.detach().clone()


def gathered(model: nn.Module, sharded: bool):
    """A context in which every parameter of ``model`` is whole (ZeRO-3 gathers all of them, every rank taking
    part); a no-op when nothing is sharded. For readers that need the whole model at once (an export)."""
    if not sharded:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)


def gradient_norm(engine) -> float:
    """The global gradient norm DeepSpeed computed in its last step (before clipping)."""
    norm = engine.get_global_grad_norm()
    if norm is None:
        return 0.0
    return float(norm.item() if isinstance(norm, torch.Tensor) else norm)


def clear_discarded_update(engine) -> None:
    """After DeepSpeed discarded a non-finite update. DeepSpeed 0.19.8's ZeRO-1/2 step clears its reduced-gradient
    partitions (``averaged_gradients``) on that path only without optimizer offload; with offload and fp32
    gradient accumulation they keep the NaN and the next update's reductions are added into it, so every later
    update would be discarded too. This clears them as the non-offload path does. Written for DeepSpeed 0.19.8's
    ``DeepSpeedZeroOptimizer``; other optimizers are left alone."""
    optimizer = getattr(engine, "optimizer", None)
    if not getattr(optimizer, "cpu_offload", False) or not isinstance(getattr(optimizer, "averaged_gradients", None), dict):
        return
    for group in list(optimizer.averaged_gradients):
        optimizer.averaged_gradients[group] = None
