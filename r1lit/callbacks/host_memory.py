"""KeepFreedHostMemory: on a CPU fit, large tensors reuse freed memory instead of faulting in new pages."""

from __future__ import annotations

import lightning as L

from r1lit.training.host_memory import keep_freed_host_memory


class KeepFreedHostMemory(L.Callback):
    """When the trainer runs on the CPU, tells glibc to keep freed memory for reuse (``keep_freed_host_memory``):
    each step's large tensors (a chunk's logits, the embedding's bf16 copy and its gradient) then cost no page faults.
    On ``bench_vs_trl``'s workload the optimisation phase is about 30 % faster and peak RSS up to ~0.5 GiB higher
    (freed memory stays in the process): docs/benchmarks.md, "Host memory on CPU". The ``r1lit`` command adds it;
    list it with ``enabled: false`` to keep glibc's defaults. GPU runs are left alone."""

    def __init__(self, enabled: bool = True):
        """
        Args:
            enabled: keep freed host memory on a CPU fit (False: glibc's defaults, the lower peak RSS).
        """
        self.enabled = enabled
        self.applied = False  # whether glibc took the setting (False off glibc, on GPU runs, or when disabled)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.enabled and trainer.strategy.root_device.type == "cpu":
            self.applied = keep_freed_host_memory()
