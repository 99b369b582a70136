"""Test-only callbacks that record what a run did, for comparing an interrupted run with an uninterrupted one."""

from __future__ import annotations

import json
import os

import lightning as L


class BatchRecorder(L.Callback):
    """Appends each training batch's problems and the global step to a jsonl file, synced to disk at once so a
    SIGKILL right after cannot lose the line."""

    def __init__(self, path: str):
        """
        Args:
            path: jsonl file to append to.
        """
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": trainer.global_step, "rank": trainer.global_rank, "problems": batch["problem"]}) + "\n")
            f.flush()
            os.fsync(f.fileno())
