"""The run folder's lock (one live run per folder, a dead run's lock taken over) and the CSV writer that keeps
the history it finds."""

import csv
import os
import socket
import subprocess
import sys

from lightning.pytorch.loggers import CSVLogger

from r1lit.cli.run_folder import LOCK, _lock, keep_csv_history


def test_a_live_pid_holds_the_folder_and_a_dead_one_does_not(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK).write_text(f"{other.pid} {socket.gethostname()}\n")
        message = _lock(tmp_path)
        assert message and f"in use by a live run (pid {other.pid} on {socket.gethostname()})" in message
    finally:
        other.kill()
        other.wait(timeout=30)
    assert _lock(tmp_path) is None  # its process is gone: the lock is taken over
    assert (tmp_path / LOCK).read_text().split()[0] == str(os.getpid())


def rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_a_resumed_csv_log_appends_and_a_new_key_keeps_the_old_rows(tmp_path):
    first = CSVLogger(tmp_path, name="tiny", version=0)
    first.log_metrics({"reward": 0.5}, step=0)
    first.save()
    resumed = CSVLogger(tmp_path, name="tiny", version=0)
    keep_csv_history([resumed], append=True)
    resumed.log_metrics({"reward": 0.75}, step=1)
    resumed.save()
    resumed.log_metrics({"reward": 1.0, "kl": 0.25}, step=2)  # a new column: the file is rewritten with all rows
    resumed.save()
    assert [(r["step"], r["reward"], r["kl"]) for r in rows(tmp_path / "tiny" / "version_0" / "metrics.csv")] == [
        ("0", "0.5", ""), ("1", "0.75", ""), ("2", "1.0", "0.25")]


def test_a_new_run_moves_an_old_csv_log_aside(tmp_path):
    first = CSVLogger(tmp_path, name="tiny", version=0)
    first.log_metrics({"reward": 0.5}, step=0)
    first.save()
    fresh = CSVLogger(tmp_path, name="tiny", version=0)
    keep_csv_history([fresh], append=False)
    fresh.log_metrics({"reward": 0.25}, step=0)
    fresh.save()
    folder = tmp_path / "tiny" / "version_0"
    assert [r["reward"] for r in rows(folder / "metrics.1.csv")] == ["0.5"]
    assert [r["reward"] for r in rows(folder / "metrics.csv")] == ["0.25"]
