"""``--ckpt_path last`` for auto-versioned loggers: find the run folder that holds the last checkpoint.

A TensorBoard (or CSV) logger without a fixed ``version`` opens a new ``version_N`` folder on every start, and
ModelCheckpoint looks for ``last.ckpt`` under that new folder, so Lightning silently starts over. Pinning the logger
to the newest version that has a last checkpoint makes the resumed run find it and keep writing into the same folder.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from r1lit.training.checkpoints import checkpoint_files

_VERSION = re.compile(r"^version_(\d+)$")


def last_checkpoint_version(save_dir: str | Path, name: str) -> int | None:
    """The highest N for which ``save_dir/name/version_N/checkpoints`` holds a ``last*.ckpt``; None if none does."""
    root = Path(save_dir) / (name or "")
    found = []
    if root.is_dir():
        for folder in root.iterdir():
            match = _VERSION.match(folder.name)
            if match and checkpoint_files(folder / "checkpoints", "last*.ckpt"):
                found.append(int(match.group(1)))
    return max(found) if found else None


def pin_logger_for_resume(config) -> None:
    """Edit a parsed ``fit`` config in place: with ``ckpt_path: last`` and an auto-versioned file logger, pin the
    logger's version to the run that has the last checkpoint (a notice says which, or that there is none)."""
    if getattr(config, "ckpt_path", None) != "last":
        return
    loggers = config.trainer.logger
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init = getattr(logger, "init_args", None)
        class_path = getattr(logger, "class_path", "") or ""
        if init is None or not class_path.endswith(("TensorBoardLogger", "CSVLogger")):
            continue
        if getattr(init, "version", None) is not None:
            continue  # a fixed version already names the folder
        save_dir, name = init.save_dir, getattr(init, "name", "lightning_logs")
        version = last_checkpoint_version(save_dir, name)
        if version is None:
            print(f"[r1lit] --ckpt_path last: no last checkpoint under {Path(save_dir) / (name or '')}/version_*/"
                  "checkpoints; starting from step 0", file=sys.stderr)
        else:
            init.version = version
            print(f"[r1lit] --ckpt_path last: resuming {Path(save_dir) / (name or '') / f'version_{version}'}",
                  file=sys.stderr)
        return
