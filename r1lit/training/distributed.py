"""Small collectives over the training ranks (torch.distributed), each an identity on a single process.

Every rank must call them the same number of times, in the same order, as with any collective.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def max_over_ranks(value: int) -> int:
    """The largest of every rank's ``value``."""
    if _world() == 1:
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor(value, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t)


def gather_uneven(values: Tensor) -> Tensor:
    """Every rank's [n_r] values concatenated in rank order; n_r may differ between ranks."""
    world = _world()
    if world == 1:
        return values
    size = torch.tensor([values.numel()], device=values.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    width = int(max(int(s) for s in sizes))
    padded = torch.nn.functional.pad(values, (0, width - values.numel()))
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(n)] for part, n in zip(parts, sizes)])


def gather_objects(obj) -> list:
    """Every rank's picklable ``obj``, in rank order."""
    world = _world()
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def end_process_group() -> None:
    """Destroy the default process group when the run made one. Lightning's strategies leave it alive at the end of
    ``fit``; torch's NCCL backend then warns at exit that it leaks resources (seen with torch 2.11 on an H200) and
    frees the communicators during interpreter teardown instead of in order."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
