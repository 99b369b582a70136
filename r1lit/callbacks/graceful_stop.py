"""GracefulStop: a preempted or interrupted run ends at a step boundary with a checkpoint it can resume from."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Literal

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from r1lit.training.checkpoints import resume_hint
from r1lit.errors import R1LitError


class GracefulStop(L.Callback):
    """On SIGTERM (preemption, ``scancel``, ``docker stop``) or SIGINT (Ctrl-C): finish the current step, save a
    checkpoint where ``--ckpt_path last`` finds it, stop, and exit 0 saying how to resume.

    Lightning's own SIGTERM handler ends the run after the step without saving (``SIGTERMException``) and Ctrl-C
    ends it with exit code 1; this callback's handlers replace both from train start and the previous handlers
    come back at the end. A signal on any rank stops every rank after the same step. A second signal while
    stopping is ignored: checkpoints are written atomically (``AtomicCheckpointIO``), so even ``kill -9`` leaves
    the previous one loadable. When a fit fails with an exception, it says which checkpoint to resume from.

    The checkpoint: ``last.ckpt`` of the first ``ModelCheckpoint`` with ``save_last=True`` (through that callback,
    so it does not save the same step again); else ``last.ckpt`` in the first ``ModelCheckpoint``'s folder; else
    ``<default_root_dir>/checkpoints/last.ckpt``. ``trainer.min_steps`` / ``min_epochs`` keep Lightning from
    stopping early, so leave them unset. The ``r1lit`` command adds this callback when the config lacks it.
    """

    def __init__(self, signals: tuple[Literal["SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2"], ...] = ("SIGTERM", "SIGINT")):
        """
        Args:
            signals: signals that stop the run gracefully (add ``SIGUSR1`` for ``sbatch --signal=USR1@120``).
        """
        self.signals = [signal.Signals[name] for name in signals]
        self.received: str | None = None  # name of the first signal received
        self.saved_path: str | None = None
        self._previous: dict[signal.Signals, object] = {}
        self._started = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Before Lightning installs its own handlers: these are what the process had, restored at the end.
        self._previous = {sig: signal.getsignal(sig) for sig in self.signals}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = True
        self.received, self.saved_path = None, None
        if threading.current_thread() is not threading.main_thread():
            return  # Python delivers signals to the main thread only; fit called from another thread keeps the defaults
        for sig in self.signals:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = name
            message = f"\nr1lit: {name} received: finishing this step, then saving a checkpoint and stopping.\n"
        else:
            message = f"\nr1lit: {name} received again: still stopping (kill -9 is safe: checkpoints are written atomically).\n"
        os.write(2, message.encode())  # no buffered print inside a signal handler (reentrancy)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self.saved_path is not None:
            return
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):  # any rank's signal
            return
        self.saved_path = self._save(trainer)
        trainer.should_stop = True
        if trainer.is_global_zero:
            print(
                f"r1lit: stopped by {self.received or 'a signal on another rank'} after step {trainer.global_step}; "
                f"checkpoint saved to {self.saved_path}\nr1lit: resume with: r1lit fit <the same arguments> "
                f"--ckpt_path {self.saved_path}",
                file=sys.stderr, flush=True,
            )

    def _save(self, trainer: L.Trainer) -> str:
        checkpoints = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.dirpath]
        for callback in checkpoints:
            if callback.save_last is True:
                # Lightning's own bookkeeping: it then skips its periodic and end-of-epoch saves of this step.
                callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))
                return os.path.abspath(callback.last_model_path)
        folder = checkpoints[0].dirpath if checkpoints else os.path.join(trainer.default_root_dir, "checkpoints")
        path = os.path.abspath(os.path.join(folder, ModelCheckpoint.CHECKPOINT_NAME_LAST + ModelCheckpoint.FILE_EXTENSION))
        trainer.save_checkpoint(path)
        return path

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()
        if not self._started:
            return  # failed before training: nothing to resume
        hint = resume_hint(trainer)
        if isinstance(exception, R1LitError):
            exception.resume_hint = hint  # printed after the error's own line by the r1lit command
        elif trainer.is_global_zero:
            print(hint, file=sys.stderr, flush=True)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in self._previous.items():
                if handler is not None:
                    signal.signal(sig, handler)
        self._previous = {}
