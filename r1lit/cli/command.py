"""The ``r1lit`` command: LightningCLI over GRPOModule and MathDataModule.

``r1lit fit --config configs/qwen0.5b.yaml``; ``r1lit fit --help`` explains every argument from the docstrings;
``--print_config`` shows the full resolved config. Components are named by ``class_path``; r1lit's own classes
can be named by their short name (``class_path: AccuracyReward``).
"""

from __future__ import annotations

import os
import sys
import traceback

import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI

# Imported so that their short class names resolve in YAML.
import r1lit.callbacks  # noqa: F401
import r1lit.grpo.importance_sampling  # noqa: F401
import r1lit.producer.difficulty  # noqa: F401
import r1lit.data  # noqa: F401
import r1lit.producer.dynamic_sampling  # noqa: F401
import r1lit.grpo.losses  # noqa: F401
import r1lit.training.optim  # noqa: F401
import r1lit.rewards  # noqa: F401
import r1lit.rollout  # noqa: F401
import r1lit.eval.pass_at_k  # noqa: F401
from r1lit.callbacks import GracefulStop, StepProgressBar, VLLMEngineCallback
from r1lit.training.checkpoints import AtomicCheckpointIO
from r1lit.cli.checks import check_combinations
from r1lit.data import MathDataModule
from r1lit.errors import ConfigError, R1LitError
from r1lit.grpo.optimise import check_batch_layout
from r1lit.module import GRPOModule
from r1lit.cli.resume import pin_logger_for_resume
from r1lit.rollout.vllm.base import VLLMSettings


class R1LitCLI(LightningCLI):
    """Links the settings written once (model path → tokenizer, one-step-off → the data's lookahead) and checks
    combinations before anything loads."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.model_name_or_path", "data.tokenizer")
        parser.link_arguments("model.async_generation", "data.lookahead")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        try:
            check_batch_layout(config.data.batch_size, config.model.num_generations, config.model.micro_batch_size)
            check_combinations(config, torch.cuda.is_available(), torch.cuda.device_count())
        except ConfigError as error:
            self.parser.error(str(error))
        if self.subcommand == "fit":
            pin_logger_for_resume(config)

    def instantiate_trainer(self, **kwargs):
        """Adds what the config implies: the ``VLLMEngineCallback`` that runs a vLLM ``model.engine``, and what
        it leaves out of fault tolerance and display: ``GracefulStop``, atomic checkpoint writes, the step bar."""
        trainer = self._get(self.config_init, "trainer", default={})
        callbacks, plugins = _as_list(trainer.get("callbacks")), _as_list(trainer.get("plugins"))
        first, added = [], []
        engine = getattr(self.model, "engine", None)
        if isinstance(engine, VLLMSettings) and not any(isinstance(c, VLLMEngineCallback) for c in callbacks):
            first.append(VLLMEngineCallback())  # first: the engine is up before any watcher's setup
        if not any(isinstance(c, GracefulStop) for c in callbacks):
            added.append(GracefulStop())
        if trainer.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            added.append(StepProgressBar())  # steps of max_steps, not batches of an epoch
        if first or added:
            kwargs.setdefault("callbacks", [*first, *callbacks, *added])
        strategy_io = getattr(trainer.get("strategy"), "_checkpoint_io", None)  # Lightning refuses two
        if strategy_io is None and not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs.setdefault("plugins", [*plugins, AtomicCheckpointIO()])
        return super().instantiate_trainer(**kwargs)


DESCRIPTION = (
    "r1lit: R1-Zero-style GRPO training of small language models on math problems with PyTorch Lightning. "
    "`r1lit fit --config configs/smollm2-cpu.yaml` trains the embedded model on CPU; configs/qwen0.5b.yaml and "
    "qwen1.5b.yaml are the GPU recipes."
)
EPILOG = (
    "Subcommands: fit (train), validate, test, predict (Lightning's), and export: `r1lit export CKPT OUT` writes a "
    "Hugging Face folder from a checkpoint (`r1lit export --help`). `r1lit fit --help` explains every setting."
)


def _as_list(value) -> list:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``r1lit`` console script. Errors in the user's settings or data end the run with their
    message (and, for a failing reward, the reward's own traceback) instead of a trainer stack trace."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if args is None else list(args)
    try:
        if argv[:1] == ["export"]:  # not a Trainer subcommand: its own small parser
            from r1lit.policy.export import main as export_main

            export_main(argv[1:])
            return
        R1LitCLI(
            GRPOModule,
            MathDataModule,
            parser_kwargs={"description": DESCRIPTION, "epilog": EPILOG},
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,  # the module owns AdamW + cosine (manual optimisation)
            args=args,
        )
    except R1LitError as error:
        if error.__cause__ is not None:
            traceback.print_exception(error.__cause__)
        print(f"r1lit: error: {error}", file=sys.stderr)
        if error.resume_hint:
            print(error.resume_hint, file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
