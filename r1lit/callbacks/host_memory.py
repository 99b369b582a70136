"""KeepFreedHostMemory: on a CPU fit, large tensors reuse freed memory instead of faulting in new pages."""

from __future__ import annotations

import lightning as L

from r1lit.training.host_memory import keep_freed_host_memory


class KeepFreedHostMemory(L.Callback):
    """When the trainer runs on the CPU, tells glibc to keep freed memory for reuse (``keep_freed_host_memory``):
    each step's large tensors (a chunk's logits, the embedding's bf16 copy and its gradient) then cost no page faults,
    and a CPU step is faster. Opt-in, for short runs and measurements: a freed block stays in the heap, and glibc
    cannot hand its hole to the next block of the same size (an aligned request asks for a little more), so a process
    that keeps allocating one size with other allocations in between grows its heap with the run
    (tests/unit/training/test_host_memory.py shows the pattern; speed and peak RSS over 8 and 40 steps:
    docs/benchmarks.md, "Host memory on CPU"). GPU runs are left alone."""

    def __init__(self, enabled: bool = True):
        """
        Args:
            enabled: keep freed host memory on a CPU fit (False: glibc's defaults).
        """
        self.enabled = enabled
        self.applied = False  # whether glibc took the setting (False off glibc, on GPU runs, or when disabled)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.enabled and trainer.strategy.root_device.type == "cpu":
            self.applied = keep_freed_host_memory()
