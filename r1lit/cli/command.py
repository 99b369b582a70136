"""The ``r1lit`` command: LightningCLI over GRPOModule and MathDataModule.

``r1lit fit --config configs/qwen0.5b.yaml``; ``r1lit fit --help`` explains every argument from the docstrings;
``--print_config`` shows the full resolved config. Components are named by ``class_path``; r1lit's own classes
can be named by their short name (``class_path: AccuracyReward``).
"""

from __future__ import annotations

import os
import sys

import torch
from jsonargparse import set_parsing_settings
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
from r1lit.callbacks import GracefulStop, StepProgressBar, TrainingHealth, VLLMEngineCallback
from r1lit.training.checkpoints import AtomicCheckpointIO
from r1lit.cli.checks import check_combinations
from r1lit.data import MathDataModule
from r1lit.cli.errors import STARTUP, USAGE, exit_code
from r1lit.errors import ConfigError
from r1lit.grpo.optimise import check_batch_layout
from r1lit.module import GRPOModule
from r1lit.cli.resume import resolve_ckpt_path
from r1lit.cli.run_folder import RunFolder, keep_csv_history
from r1lit.rollout.vllm.base import VLLMSettings
from r1lit.training.deepspeed import resolve_deepspeed_json
from r1lit.training.distributed import end_process_group_at_exit, keep_process_group_at_exit, process_group_alive


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
            if self.parser.exit_on_error:  # R1LitCLI used without main(): argparse's usage error
                self.parser.error(str(error))
            error.exit_code = USAGE  # refused at parse time, like a parse error
            raise
        strategy_args = getattr(getattr(config.trainer, "strategy", None), "init_args", None)
        if isinstance(getattr(strategy_args, "config", None), str):  # a DeepSpeed JSON: not relative to the cwd
            strategy_args.config = resolve_deepspeed_json(strategy_args.config, [str(f) for f in config.get("config") or []])

    def before_fit(self) -> None:
        if self.trainer.is_global_zero and self.subcommand == "fit":
            keep_csv_history(self.trainer.loggers, append=self.config["fit"].get("ckpt_path") is not None)
        if self.trainer.world_size > 1:
            STARTUP.release()  # rank processes about to be launched would inherit the held stderr

    before_validate = before_test = before_predict = before_fit

    def _parse_ckpt_path(self) -> None:
        """Resolve and check ``--ckpt_path`` (``last``, truncated files, another model) before Lightning reads the
        checkpoint's hyper-parameters into the config (lightning 2.6 ``LightningCLI._parse_ckpt_path``)."""
        if self.config.get("subcommand") == "fit":
            resolve_ckpt_path(self.config["fit"])
        super()._parse_ckpt_path()

    def instantiate_trainer(self, **kwargs):
        """Adds what the config implies: the ``VLLMEngineCallback`` that runs a vLLM ``model.engine``, and what
        it leaves out of fault tolerance and display: ``GracefulStop``, ``TrainingHealth``, atomic checkpoint writes,
        the step bar. A callback the config lists itself keeps its settings and is not added twice."""
        trainer = self._get(self.config_init, "trainer", default={})
        callbacks, plugins = _as_list(trainer.get("callbacks")), _as_list(trainer.get("plugins"))
        first, added = [], []
        engine = getattr(self.model, "engine", None)
        if isinstance(engine, VLLMSettings) and not any(isinstance(c, VLLMEngineCallback) for c in callbacks):
            first.append(VLLMEngineCallback())  # first: the engine is up before any watcher's setup
        if not any(isinstance(c, GracefulStop) for c in callbacks):
            added.append(GracefulStop())
        if not any(isinstance(c, TrainingHealth) for c in callbacks):
            added.append(TrainingHealth())  # names the fix when a run stops learning; stops on a frozen engine
        if trainer.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            added.append(StepProgressBar())  # steps of max_steps, not batches of an epoch
        if first or added:
            kwargs.setdefault("callbacks", [*first, *callbacks, *added])
        strategy_io = getattr(trainer.get("strategy"), "_checkpoint_io", None)  # Lightning refuses two
        if strategy_io is None and not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs.setdefault("plugins", [*plugins, AtomicCheckpointIO()])
        return super().instantiate_trainer(**kwargs)


# The typed settings objects (PolicyConfig, SamplingConfig, …) document each field in a docstring under it: read
# those too, so that --help explains every field, not only constructor arguments with an Args section.
set_parsing_settings(docstring_parse_attribute_docstrings=True)

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
    """Entry point of the ``r1lit`` console script. Any failure ends the run with exit code 1 (2 for settings refused
    while parsing) and, first on stderr, one line naming the cause and the fix (``r1lit.cli.errors``); the
    traceback goes to a log file."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if args is None else list(args)
    STARTUP.hold()
    group_existed = process_group_alive()
    try:
        if argv[:1] == ["export"]:  # not a Trainer subcommand: its own small parser
            from r1lit.policy.export import main as export_main

            export_main(argv[1:])
        else:
            R1LitCLI(
                GRPOModule,
                MathDataModule,
                parser_kwargs={"description": DESCRIPTION, "epilog": EPILOG, "exit_on_error": False},
                save_config_callback=RunFolder,
                auto_configure_optimizers=False,  # the module owns AdamW + cosine (manual optimisation)
                args=args,
            )
            end_process_group_at_exit(group_existed)
    except Exception as error:  # noqa: BLE001 - every failure gets its one line
        if not group_existed:  # this call's own group: a peer may wait in a collective (not an earlier fit's)
            keep_process_group_at_exit()
        STARTUP.release(error, argv)
        raise SystemExit(exit_code(error)) from None
    finally:
        STARTUP.release()


if __name__ == "__main__":
    main()
