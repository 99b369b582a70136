"""VLLMEngineCallback: starts the module's vLLM engine, keeps its weights equal to the policy's, and stops it.

The engine is chosen in one place, ``model.engine``: ``VLLMEngine`` (in the training process: ``cpu``, or
``colocate`` with one engine per rank) or ``VLLMServerEngine`` (its own process: an engine per node on
reserved GPUs, one for the job, or attached by ``base_url``). The ``r1lit`` command adds this callback whenever
``model.engine`` is one of them; list it in ``trainer.callbacks`` only to change ``sync_every_n_steps``. It only
runs the engine's life: start at setup (every rank together), push weights at train start (which also covers a
resume: Lightning restores the checkpoint before it) and after every ``sync_every_n_steps``-th optimizer step, close
at teardown or on an exception. A push is done when every rank reports that its engine took the weights (one
all-gather, ``rollout.agreement``): an engine that failed fails every rank, on every node, with its message.
"""

from __future__ import annotations

import os
import time

import lightning as L
import torch

from r1lit.callbacks.run_info import EveryNSteps
from r1lit.errors import ConfigError, R1LitError
from r1lit.policy.loading import resolve_model_path
from r1lit.rollout.agreement import agree
from r1lit.rollout.background import BackgroundGeneration
from r1lit.rollout.engine import engine_failure
from r1lit.rollout.vllm.launch import EngineLaunch
from r1lit.rollout.vllm.base import VLLMSettings
from r1lit.training.deepspeed import full_parameters, zero_stage


class VLLMEngineCallback(L.Callback):
    """Runs the life of ``model.engine`` (a vLLM engine) and pushes the policy's weights into it."""

    def __init__(self, sync_every_n_steps: int = 1):
        """
        Args:
            sync_every_n_steps: push the policy's weights to vLLM after optimizer steps n, 2n, … (1-based).
        """
        if sync_every_n_steps < 1:
            raise ConfigError(f"sync_every_n_steps must be >= 1, got {sync_every_n_steps}")
        self.sync_every_n_steps = sync_every_n_steps
        self.schedule = EveryNSteps(sync_every_n_steps)
        self.push_seconds: list[float] = []  # time of each weight push, for benchmarks and logs
        self.engine: VLLMSettings | None = None

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        engine = getattr(pl_module, "engine", None)
        if not isinstance(engine, VLLMSettings):
            raise ConfigError(
                f"VLLMEngineCallback runs a vLLM engine, but model.engine is {type(engine).__name__}; set model.engine "
                "to VLLMEngine (in process) or VLLMServerEngine (its own process), or drop the callback"
            )
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "max_prompt_length"):
            raise ConfigError("VLLMEngineCallback sizes the engine from the datamodule's max_prompt_length and batch_size; "
                              "train with a MathDataModule (data: in the config)")
        model_path = resolve_model_path(pl_module.hparams.model_name_or_path)
        launch = EngineLaunch(
            model_path=os.path.abspath(model_path) if os.path.exists(model_path) else model_path,  # hub ids stay
            max_prompt_length=datamodule.max_prompt_length,
            max_tokens=pl_module.sampling.max_tokens,
            sequences_per_call=datamodule.batch_size * pl_module.num_generations,
            global_rank=trainer.global_rank,
            local_rank=trainer.local_rank,
            world_size=trainer.world_size,
            node_rank=trainer.node_rank,
            num_nodes=trainer.num_nodes,
            training_devices=trainer.num_devices,
            training_gpus=tuple(trainer.device_ids) if trainer.num_devices and torch.cuda.is_available() else (),
            zero_stage=zero_stage(trainer),
            log_dir=trainer.log_dir,
        )
        self.engine = engine
        with engine_failure(engine, "starting"):
            engine.start(launch)

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        self.push(trainer, pl_module)  # a resumed run's restored weights reach vLLM before its first rollout

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.schedule.due(trainer):
            self.push(trainer, pl_module)
            pl_module.log("time/weight_push", self.push_seconds[-1], on_step=True, batch_size=1)

    def push(self, trainer: L.Trainer, pl_module) -> None:
        """Hand the policy's weights to the engine on every rank (each engine takes them from its one pusher rank;
        under ZeRO-3 every rank joins each parameter's gather, once). The push is done when every rank reports its
        engine took them; then no rank generates until it is."""
        start = time.perf_counter()
        if isinstance(self.engine, BackgroundGeneration):  # one-step-off: no rank may still be generating
            self.engine.wait_idle()
            if trainer.world_size > 1:
                trainer.strategy.barrier("r1lit_generation_done")
        weights = full_parameters(pl_module.policy, zero_stage(trainer) == 3)
        failure = None
        try:
            with engine_failure(self.engine, "loading the policy's new weights"):
                self.engine.load_weights(weights)
        except R1LitError as error:
            failure = error
        agree(self.engine, failure, "loading the policy's new weights")  # every engine has them, or every rank stops
        self.engine.weights_step = trainer.global_step
        self.push_seconds.append(time.perf_counter() - start)

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        self._close()

    def teardown(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        self._close()

    def _close(self) -> None:
        if self.engine is not None:
            self.engine.close()


class VLLMRollout(VLLMEngineCallback):
    """``VLLMEngineCallback`` under the name existing configs use (``class_path: VLLMRollout``)."""
