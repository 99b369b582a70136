"""Where a run is, in the terms the completion log and the aha monitor share with TensorBoard."""

from __future__ import annotations

from pathlib import Path

import lightning as L


def run_dir(trainer: L.Trainer) -> Path:
    """The run's folder: the first logger's version folder (``runs/<name>/version_N``), else the root dir.
    Must be called on every rank (Lightning broadcasts it), e.g. from ``setup``."""
    return Path(trainer.log_dir or trainer.default_root_dir)


def log_step(trainer: L.Trainer) -> int:
    """The step number the current training batch's scalars get in the loggers (TensorBoard's x axis).

    It counts training batches (0 for the first) and so differs from ``trainer.global_step`` (optimizer steps,
    μ per batch, already advanced by the time a batch ends)."""
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def samples_seen(pl_module: L.LightningModule) -> int | None:
    """Completions generated so far over all ranks, this step's included (``GRPOModule.samples_seen``)."""
    value = getattr(pl_module, "samples_seen", None)
    return None if value is None else int(value)


class EveryNSteps:
    """The one meaning of ``every_n_steps`` in r1lit's callbacks: after optimizer steps n, 2n, 3n, … (1-based
    ``trainer.global_step``, as Lightning's ``every_n_train_steps``), once each (a batch whose update was skipped
    does not fire again). n = 0 never fires."""

    def __init__(self, n: int):
        self.n, self.last = n, -1

    def due(self, trainer: L.Trainer) -> bool:
        step = trainer.global_step
        if self.n <= 0 or step <= 0 or step % self.n or step == self.last:
            return False
        self.last = step
        return True
