"""Skipping updates whose loss or gradient is NaN/inf, and stopping a run that keeps producing them.

One bad update (a bf16 overflow, a pathological batch) should cost that update, not the weights: AdamW would
write NaN into every parameter and moment. A run that produces several in a row has diverged and should stop
while its last checkpoint is still good, with the settings to change.

A skipped update changes nothing: no optimizer step, no LR-scheduler step, no ``global_step`` increment (so
``max_steps`` still counts real updates and the schedule stays aligned with them after a resume); the batch is
consumed.
"""

from __future__ import annotations

import math

from r1lit.errors import ConfigError, TrainingError
from r1lit.training.deepspeed import clear_discarded_update, gradient_norm


def finite_update(loss: float, grad_norm: float | None) -> bool:
    """Whether an update may be applied: both its loss and its gradient norm are finite numbers. A norm of None
    (DeepSpeed computes it inside its own step) leaves the loss as the only check."""
    return math.isfinite(loss) and (grad_norm is None or math.isfinite(grad_norm))


class NonFiniteGuard:
    """Counts skipped updates (``skipped``, cumulative and saved in checkpoints) and raises after
    ``max_consecutive`` of them in a row."""

    def __init__(self, max_consecutive: int = 3):
        if max_consecutive < 1:
            raise ConfigError(f"model.max_consecutive_nonfinite must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.skipped = 0
        self.consecutive = 0

    def skip(self, loss: float, grad_norm: float | None, strategy=None) -> bool:
        """True when this update must be skipped. ``strategy`` (Lightning's) makes every rank agree: one rank's
        NaN skips the update everywhere, so replicas stay equal. Under fp16 ``GradScaler`` skips overflowing
        steps itself (and an overflow there is routine), so nothing is skipped here."""
        if strategy is not None and getattr(strategy.precision_plugin, "scaler", None) is not None:
            return False
        finite = finite_update(loss, grad_norm)
        if strategy is not None:
            finite = strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            self.consecutive = 0
            return False
        self.skipped += 1
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            raise TrainingError(
                f"the loss or gradient norm was not finite for {self.consecutive} updates in a row (last: loss={loss}, "
                f"grad_norm={grad_norm}; {self.skipped} skipped in all), so training has diverged. Resume from the last "
                "checkpoint with one of: a lower learning rate (model.optimizer's lr); gradient clipping (model.max_grad_norm: 1.0); "
                "trainer.precision: 32-true or bf16-mixed instead of 16-mixed / bf16-true; a smaller loss.beta. "
                "model.max_consecutive_nonfinite sets how many bad updates in a row are skipped before the run stops."
            )
        return True

    def state_dict(self) -> dict[str, int]:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.skipped = int(state.get("skipped", 0))
        self.consecutive = int(state.get("consecutive", 0))


def guarded_step(guard: NonFiniteGuard, optimizer, loss: float, grad_norm: float | None, strategy=None,
                 ds_engine=None) -> tuple[bool, float | None]:
    """Take the optimizer step unless the update is not finite; returns ``(stepped, grad_norm)``.

    Without DeepSpeed the norm is known before the step (clipping computed it), so a bad update is never stepped.
    Under DeepSpeed the norm exists only inside its step, and ZeRO resets its per-update state (micro-step id,
    reduction buckets, averaged gradients) only there (``clear_discarded_update`` adds what offload misses): ``zero_grad`` alone would carry a skipped update's reduced
    gradients into the next one. So the step always runs, and DeepSpeed (0.19.8, ZeRO 1–3) discards an update
    whose reduced gradient norm is not finite, resetting that state, and reports the norm as inf. A non-finite loss
    whose gradient is finite gives a finite update: DeepSpeed applies it, and the guard still counts it.
    """
    if ds_engine is None:
        if guard.skip(loss, grad_norm, strategy):
            optimizer.zero_grad(set_to_none=True)
            return False, grad_norm
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return True, grad_norm
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    grad_norm = gradient_norm(ds_engine)
    guard.skip(loss, grad_norm, strategy)
    if not math.isfinite(grad_norm):
        clear_discarded_update(ds_engine)
    return math.isfinite(grad_norm), grad_norm
