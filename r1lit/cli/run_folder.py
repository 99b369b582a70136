"""The run folder (``<save_dir>/<name>/<version>``) keeps what earlier runs wrote there.

``RunFolder`` stands where LightningCLI's ``SaveConfigCallback`` stands and adds three guarantees:
- one live run per folder: a lock file names the run's pid; a second run into the folder stops with the pid to
  wait for (a lock left by a dead process is taken over); released on every exit;
- ``config.yaml`` is the folder's first config: a later run with a different config saves it beside, as
  ``config.1.yaml``, ``config.2.yaml``, …, so a resume that then fails replaces nothing;
- ``metrics.csv`` of a ``CSVLogger`` is appended to on a resume (Lightning's CSV writer deletes the file it finds);
  a new run into a folder that holds one moves it aside to ``metrics.1.csv`` first (``keep_csv_history``, which
  the r1lit command calls before ``fit``).
"""

from __future__ import annotations

import csv
import os
import socket
import sys
from pathlib import Path

from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from r1lit.cli.errors import STARTUP
from r1lit.errors import ConfigError

LOCK = ".r1lit.lock"


class RunFolder(SaveConfigCallback):
    """Saves the parsed config into the run folder, locks the folder for this run and keeps earlier logs."""

    _held: Path | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved:
            return
        folder = Path(trainer.log_dir)  # broadcast by Lightning: the same on every rank
        busy = _lock(folder) if trainer.is_global_zero else None
        if trainer.is_global_zero and busy is None:
            self._held = folder / LOCK
        busy = trainer.strategy.broadcast(busy)
        if busy:
            raise ConfigError(busy)
        if trainer.is_global_zero:
            self._save(folder)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def _save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / self.config_filename
        if target.is_file():
            text = self.parser.dump(self.config, skip_none=False)
            if target.read_text() == text:
                return
            target = _free_name(target)
            print(f"[r1lit] {folder / self.config_filename} kept (the config the folder's run started with); "
                  f"this run's config saved beside it as {target.name}", file=sys.stderr)
        self.parser.save(self.config, str(target), skip_none=False, overwrite=True, multifile=self.multifile)

    def on_train_start(self, trainer, pl_module) -> None:
        STARTUP.release()  # the run started: what was held on stderr comes out, and stderr streams again

    on_validation_start = on_test_start = on_predict_start = on_train_start

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._release()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._release()

    def _release(self) -> None:
        if self._held is not None and _owner(self._held)[0] == os.getpid():
            self._held.unlink(missing_ok=True)
        self._held = None


def _lock(folder: Path) -> str | None:
    """Take ``folder``'s lock for this process, or say which live run holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid, host = _owner(lock)
            if pid is not None and (host != socket.gethostname() or _alive(pid)) and pid != os.getpid():
                return (f"the run folder {folder} is in use by a live run (pid {pid} on {host}); wait for it to end, "
                        f"or give this run another logger version (if no run is live, delete {lock})")
            lock.unlink(missing_ok=True)  # left by a process that died without releasing it
            continue
        with os.fdopen(descriptor, "w") as file:
            file.write(f"{os.getpid()} {socket.gethostname()}\n")
        return None
    return f"could not lock the run folder {folder}: delete {lock} if no run is using the folder"


def _owner(lock: Path) -> tuple[int | None, str]:
    try:
        pid, host = lock.read_text().split()
        return int(pid), host
    except (OSError, ValueError):
        return None, ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_name(path: Path) -> Path:
    n = 1
    while (candidate := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
        n += 1
    return candidate


def keep_csv_history(loggers: list, append: bool) -> None:
    """Give every ``CSVLogger`` a writer that never deletes ``metrics.csv``: appended to on a resume, moved aside to
    ``metrics.N.csv`` before a new run. Call on global rank 0 before ``fit`` (Lightning creates the writers at the
    start of setup). Sets Lightning's private ``_experiment`` (lightning 2.6), before the logger creates its own
    writer, whose constructor deletes the file."""
    for logger in loggers:
        if isinstance(logger, CSVLogger) and logger._experiment is None:
            _keep(logger, append)


def _keep(logger: CSVLogger, append: bool) -> None:
    metrics = Path(logger.log_dir) / ExperimentWriter.NAME_METRICS_FILE
    if metrics.is_file() and not append:
        moved = _free_name(metrics)
        os.replace(metrics, moved)
        print(f"[r1lit] {metrics} of an earlier run moved to {moved.name}", file=sys.stderr)
    logger._experiment = _AppendingWriter(logger.log_dir)


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, starting from the header of the ``metrics.csv`` it finds instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])
