"""``--ckpt_path``: which run folder and which checkpoint a resumed ``fit`` continues from.

A TensorBoard (or CSV) logger without a fixed ``version`` opens a new ``version_N`` folder on every start, and
ModelCheckpoint looks for ``last.ckpt`` under that new folder, so Lightning silently starts over. Pinning the logger
to the newest version that holds a checkpoint makes the resumed run find it and keep writing into the same folder.
``last`` then means the newest complete checkpoint of that run, whatever wrote it: a ``last.ckpt`` left by a
graceful stop is not preferred to a later ``epoch=0-step=N.ckpt``. A truncated checkpoint is refused up front, naming
the intact one beside it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from r1lit.errors import ConfigError
from r1lit.training.checkpoints import checkpoint_files, is_complete, newest

_VERSION = re.compile(r"^version_(\d+)$")
_FILE_LOGGERS = ("TensorBoardLogger", "CSVLogger")
_KEYWORDS = ("best", "hpc", "registry")  # Lightning's other names for a checkpoint, resolved by Lightning

resuming_from: Path | None = None
"""The checkpoint the current ``fit`` resumes from, for an error that has to say which of its settings differ."""
configured_model: dict | None = None
"""The ``model`` settings of the current ``fit``, to compare with the checkpoint's."""


def last_checkpoint_version(save_dir: str | Path, name: str) -> int | None:
    """The highest N for which ``save_dir/name/version_N/checkpoints`` holds a complete checkpoint; None if none does."""
    root = Path(save_dir) / (name or "")
    found = []
    if root.is_dir():
        for folder in root.iterdir():
            match = _VERSION.match(folder.name)
            if match and checkpoint_files(folder / "checkpoints"):
                found.append(int(match.group(1)))
    return max(found) if found else None


def _file_logger(config):
    loggers = config.trainer.logger
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init = getattr(logger, "init_args", None)
        if init is not None and (getattr(logger, "class_path", "") or "").endswith(_FILE_LOGGERS):
            return init
    return None


def _run_folder(init) -> Path:
    version = init.version if isinstance(init.version, str) else f"version_{init.version}"
    return Path(init.save_dir) / (getattr(init, "name", "lightning_logs") or "") / version


def resolve_ckpt_path(config) -> None:
    """Edit a parsed ``fit`` config in place. ``ckpt_path: last`` with a file logger: pin an auto-versioned logger to
    the newest run that has a checkpoint and replace ``last`` by that run's newest complete checkpoint (a notice
    says which, or that there is none). A ``ckpt_path`` file: refuse it when truncated or trained with another
    model, saying what to pass instead."""
    global resuming_from, configured_model
    ckpt_path = getattr(config, "ckpt_path", None)
    if ckpt_path is None or ckpt_path in _KEYWORDS or str(ckpt_path).startswith("registry:"):
        return
    if ckpt_path == "last":
        init = _file_logger(config)
        if init is None:
            return  # Lightning's own "last" looks in the ModelCheckpoint folder
        root = Path(init.save_dir) / (getattr(init, "name", "lightning_logs") or "")
        if getattr(init, "version", None) is None:
            version = last_checkpoint_version(init.save_dir, getattr(init, "name", "lightning_logs"))
            if version is None:
                print(f"[r1lit] --ckpt_path last: no checkpoint under {root}/version_*/checkpoints; starting from "
                      "step 0", file=sys.stderr)
                return
            init.version = version
        found = newest(checkpoint_files(_run_folder(init) / "checkpoints"))
        if found is None:
            print(f"[r1lit] --ckpt_path last: no checkpoint under {_run_folder(init)}/checkpoints; starting from "
                  "step 0", file=sys.stderr)
            return
        config.ckpt_path = str(found.resolve())
        print(f"[r1lit] --ckpt_path last: resuming {_run_folder(init)} from {found.name}", file=sys.stderr)
    check_checkpoint(Path(config.ckpt_path), config)
    resuming_from = Path(config.ckpt_path)
    configured_model = config.model.as_dict() if hasattr(config.model, "as_dict") else dict(vars(config.model))
    if resuming_from.is_file():
        for line in settings_that_differ(resuming_from, configured_model):
            print(f"[r1lit] --ckpt_path: {line}; the checkpoint's value is used", file=sys.stderr)


def check_checkpoint(path: Path, config) -> None:
    """A checkpoint that exists, is complete and was trained on the configured base model, or a ConfigError."""
    if not path.exists():
        raise ConfigError(f"--ckpt_path {path} does not exist{_beside(path)}")
    if not is_complete(path):
        raise ConfigError(f"--ckpt_path {path} is truncated or not a checkpoint (an incomplete file){_beside(path)}")
    if path.is_dir():
        return  # DeepSpeed folder: its client state is read by the strategy
    saved = checkpoint_hparams(path)
    trained, configured = saved.get("model_name_or_path"), getattr(config.model, "model_name_or_path", None)
    if trained is not None and configured is not None and str(trained) != str(configured):
        raise ConfigError(f"--ckpt_path {path} was trained with model.model_name_or_path={trained}, this config has "
                          f"{configured}; resume with the run's own config or set model.model_name_or_path={trained}")


def checkpoint_hparams(path: Path) -> dict:
    """The module's saved hyper-parameters, read without loading the tensors (memory-mapped)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise ConfigError(f"--ckpt_path {path} cannot be read ({type(error).__name__}: {error}){_beside(path)}") from None
    return dict(checkpoint.get("hyper_parameters", {})) if isinstance(checkpoint, dict) else {}


def _beside(path: Path) -> str:
    intact = newest([p for p in checkpoint_files(path.parent) if p.resolve() != path.resolve()])
    return f"; the intact checkpoint beside it is {intact}: pass --ckpt_path {intact}" if intact else \
        "; pass --ckpt_path with a complete checkpoint, or leave it out to start over"


def settings_that_differ(path: str | Path, model_config) -> list[str]:
    """``model.<key>: checkpoint → config`` for every saved hyper-parameter the config sets differently."""
    saved = checkpoint_hparams(Path(path))
    configured = model_config if isinstance(model_config, dict) else vars(model_config)
    return [f"model.{key}: {saved[key]!r} in the checkpoint, {configured[key]!r} in the config"
            for key in sorted(saved) if key in configured and not key.startswith("_")
            and _plain(configured[key]) and saved[key] != configured[key]]


def _plain(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))
