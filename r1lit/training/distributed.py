"""Small collectives over the training ranks (torch.distributed), each an identity on a single process.

Every rank must call them the same number of times, in the same order, as with any collective.
"""

from __future__ import annotations

import atexit

import torch
import torch.distributed as dist
from torch import Tensor


def process_group_alive() -> bool:
    """Whether this process has a default process group (made by Lightning's strategy, or by the caller)."""
    return dist.is_available() and dist.is_initialized()


def _world() -> int:
    return dist.get_world_size() if process_group_alive() else 1


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
    """Destroy the default process group if one is alive."""
    if process_group_alive():
        dist.destroy_process_group()


def end_process_group_at_exit(existed_before: bool) -> None:
    """After a clean fit, destroy at interpreter exit the process group the fit made. Lightning's strategies leave it
    alive; torch's NCCL backend then warns at exit that it leaks resources (seen with torch 2.11 on an H200). At exit,
    not now: DeepSpeed caches the group, and a second fit in the same process (a notebook, a sweep) reuses it. A group
    the caller made (``existed_before``) is the caller's to end."""
    if not existed_before and process_group_alive():
        atexit.unregister(end_process_group)  # once, however many fits ran
        atexit.register(end_process_group)


def keep_process_group_at_exit() -> None:
    """After a fit that made the group and failed: leave it to the process's end (a peer may sit in a collective
    that a destroy would wait on). A failed call on an earlier clean fit's group (a typo, a bad export path in a
    notebook) keeps that fit's destroy at exit: one process, no peers."""
    atexit.unregister(end_process_group)
