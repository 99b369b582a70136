"""HFExport: Hugging Face folders of the policy during and after training, next to the checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from r1lit.callbacks.run_info import EveryNSteps
from r1lit.policy.export import DTYPES, save_pretrained
from r1lit.training.deepspeed import gathered, zero_stage


class HFExport(L.Callback):
    """Writes ``<run folder>/hf/step_<n>`` every n steps and ``<run folder>/hf/final`` when training ends."""

    def __init__(self, every_n_steps: int = 0, at_end: bool = True, dirpath: str | None = None,
                 dtype: str | None = None):
        """
        Args:
            every_n_steps: also export after optimizer steps n, 2n, … (1-based; 0 = only at the end).
            at_end: export when training ends (also after a stop by signal or max_steps).
            dirpath: where the folders go (None = ``hf`` in the logger's run folder).
            dtype: cast the exported weights (``bfloat16`` halves a float32 run's folder); None keeps them.
        """
        if dtype is not None and dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)} or None, got {dtype!r}")
        self.every_n_steps, self.at_end, self.dirpath, self.dtype = every_n_steps, at_end, dirpath, dtype
        self.schedule = EveryNSteps(every_n_steps)

    def _root(self, trainer: L.Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath)
        return Path(trainer.log_dir or trainer.default_root_dir) / "hf"

    def export(self, trainer: L.Trainer, pl_module, name: str) -> None:
        with gathered(pl_module.policy, zero_stage(trainer) == 3):  # every rank joins a ZeRO-3 gather; rank 0 writes
            if trainer.is_global_zero:
                dtype = DTYPES[self.dtype] if self.dtype else None
                save_pretrained(pl_module.policy, pl_module.tokenizer, self._root(trainer) / name, dtype)
        trainer.strategy.barrier("hf_export")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.schedule.due(trainer):
            self.export(trainer, pl_module, f"step_{trainer.global_step}")

    def on_train_end(self, trainer, pl_module) -> None:
        if self.at_end:
            self.export(trainer, pl_module, "final")
