"""StepProgressBar: the training bar of a ``max_steps`` run counts optimizer steps toward ``max_steps``.

Lightning's bar counts the batches of an epoch (and names the epoch); a GRPO run is sized in steps and often ends
mid-epoch, so the bar would stop at an arbitrary fraction of an epoch's total.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import TQDMProgressBar


class StepProgressBar(TQDMProgressBar):
    """TQDM bar over optimizer steps (``global_step`` of ``max_steps``) when ``max_steps`` is set; Lightning's
    epoch bar otherwise. The ``r1lit`` command uses it unless the config sets its own bar or turns bars off."""

    def on_train_epoch_start(self, trainer, *args) -> None:
        if trainer.max_steps <= 0:
            return super().on_train_epoch_start(trainer, *args)
        if self.train_progress_bar is not None:  # one bar for the whole run, made at train start
            bar = self.train_progress_bar
            bar.reset(total=trainer.max_steps)
            bar.initial = bar.n = trainer.global_step  # a resumed run starts where it stopped
            bar.set_description("Step")
            bar.refresh()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.max_steps <= 0:
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        bar = self.train_progress_bar
        if bar is not None and not bar.disable:
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module))
            bar.refresh()
