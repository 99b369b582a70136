"""Test-only: Lightning's DeepSpeedStrategy on CPU processes over gloo.

Lightning refuses DeepSpeed without CUDA (``setup_environment``), but DeepSpeed's engine, ZeRO partitioning and
sharded checkpoints run on its CPU accelerator; this subclass lifts only that check so CI exercises the same code
path as a GPU run (ZeRO stages, manual-optimisation accumulation, checkpoint save/restore).
"""

from __future__ import annotations

from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    def __init__(self, **kwargs):
        kwargs.setdefault("process_group_backend", "gloo")
        super().__init__(**kwargs)

    def setup_environment(self) -> None:
        DDPStrategy.setup_environment(self)  # everything but the CUDA check

    def setup_distributed(self) -> None:
        reset_seed()  # as the parent does, minus its check that CUDA device indices match local ranks
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    def _setup_model_and_optimizer(self, model, optimizer, lr_scheduler=None):
        import argparse

        import deepspeed

        parameters = filter(lambda p: p.requires_grad, model.parameters())
        engine, ds_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self.local_rank),  # the parent passes root_device.index: None on CPU
            config=self.config, model=model, model_parameters=parameters, optimizer=optimizer,
            lr_scheduler=lr_scheduler, dist_init_required=False,
        )
        return engine, ds_optimizer
