"""Checkpoint files that a hard kill cannot corrupt, and where a stopped or failed run can resume from.

Lightning's ``TorchCheckpointIO`` serialises the whole checkpoint into memory, then moves a temporary file from
the system temp folder onto the target: a rename when both are on one filesystem, otherwise a copy that
truncates the target first, and never an ``fsync``. ``AtomicCheckpointIO`` streams ``torch.save`` into a hidden
file beside the target, ``fsync``\\ s it, and ``os.replace``\\ s it onto the target: whoever reads the target sees
the previous checkpoint or the new one, never half of one, and no partial file ends in ``.ckpt``.

DeepSpeed checkpoints are folders written by DeepSpeed itself and do not pass through a ``CheckpointIO``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

PARTIAL = ".partial-"  # hidden temporary files are named .<target name>.partial-<pid>


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file in the target's folder, ``fsync``, then ``os.replace`` onto the target.

    Remote paths (``s3://`` …) go through Lightning's own writer, whose object-store uploads are atomic already.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f".{target.name}{PARTIAL}*"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        partial = target.with_name(f".{target.name}{PARTIAL}{os.getpid()}")
        try:
            with open(partial, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, target)  # replaces a file or a symlink (save_last="link") in one step
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        _fsync_folder(target.parent)  # the rename itself survives a power cut


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def is_complete(path: str | Path) -> bool:
    """Whether a checkpoint can be read to its end: a ``torch.save`` zip archive whose central directory (written
    last) is there, or a DeepSpeed folder holding model states. Cheap: reads the archive's index, not its tensors."""
    path = Path(path)
    if path.is_dir():
        return any(path.rglob("*model_states.pt"))
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def checkpoint_files(folder: str | Path, pattern: str = "*.ckpt") -> list[Path]:
    """The complete checkpoints in ``folder``: hidden partial writes, dangling ``last`` links and truncated files
    left out."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [p for p in folder.glob(pattern) if not p.name.startswith(".") and p.exists() and is_complete(p)]


def newest(paths: list[Path]) -> Path | None:
    """The most recently written checkpoint, whatever wrote it (``last.ckpt`` wins a tie of modification times)."""
    return max(paths, key=lambda p: (p.stat().st_mtime, p.name.startswith("last")), default=None)


def latest_checkpoint(trainer) -> str | None:
    """The newest checkpoint a run can resume from: in any ``ModelCheckpoint`` folder, else the one it resumed from."""
    candidates = []
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            candidates += checkpoint_files(callback.dirpath)
    if trainer.ckpt_path and os.path.exists(trainer.ckpt_path):
        candidates.append(Path(trainer.ckpt_path))
    found = newest(candidates)
    return os.path.abspath(found) if found else None


def resume_hint(trainer) -> str:
    """One sentence saying which checkpoint to resume from and how, or that there is none."""
    path = latest_checkpoint(trainer)
    if path is None:
        return "r1lit: no checkpoint was saved in this run; running the same command again starts over."
    return f"r1lit: the last checkpoint is {path}; resume with: r1lit fit <the same arguments> --ckpt_path {path}"
