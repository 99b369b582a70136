"""Answer equivalence with math-verify, inside worker processes that a bad answer cannot take down with it.

math-verify's own timeouts use ``signal.alarm``: they cannot interrupt a long C call, and with them off a power
tower or a deeply nested expression hangs. So each check runs in a worker process (``verify_worker``) with an
address-space limit and short math-verify timeouts, and the parent keeps its own clock: an item past
``item_timeout`` scores 0 and its worker is killed (a new one starts when next needed); items left at the batch
deadline score 0 too.
"""

from __future__ import annotations

import json
import logging
import math
import select
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)


PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding this r1lit package


class _Worker:
    """One checking process (``python -m r1lit.grading.verify_worker``) talking JSON lines over pipes."""

    def __init__(self, memory_limit_mb: int, inner_timeout: int, start_timeout: float):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "r1lit.grading.verify_worker", str(memory_limit_mb), str(inner_timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
            cwd=PACKAGE_ROOT,  # `-m` looks in the working directory first: run this r1lit, not one found there
        )
        ready, _, _ = select.select([self.process.stdout], [], [], start_timeout)
        if not ready or self.process.stdout.readline().strip() != "ready":
            self.kill()
            raise RuntimeError(f"answer-checking worker did not start within {start_timeout:.0f}s")

    def fileno(self) -> int:
        return self.process.stdout.fileno()

    def send(self, task: tuple[str | None, str]) -> None:
        self.process.stdin.write(json.dumps(task) + "\n")
        self.process.stdin.flush()

    def recv(self) -> float:
        line = self.process.stdout.readline()
        if not line:
            raise EOFError("answer-checking worker exited")
        return float(line)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


class SafeVerifier:
    """A small pool of answer-checking processes with per-item and per-batch time boxes."""

    def __init__(
        self, num_workers: int = 2, item_timeout: float = 4.0, batch_timeout: float = 60.0, memory_limit_mb: int = 2048
    ):
        if num_workers < 1 or item_timeout <= 0 or batch_timeout <= 0:
            raise ValueError("num_workers >= 1 and positive timeouts are required")
        self.num_workers = num_workers
        self.item_timeout = item_timeout
        self.batch_timeout = batch_timeout
        self.memory_limit_mb = memory_limit_mb
        self.timeouts = 0  # items scored 0 because a clock ran out, since construction
        self._workers: list[_Worker | None] = []

    def _new_worker(self) -> _Worker:
        return _Worker(self.memory_limit_mb, max(1, math.floor(self.item_timeout / 2)), start_timeout=120.0)

    def run(self, tasks: list[tuple[str | None, str]]) -> list[float]:
        """Score (prediction, gold) pairs; a None prediction checks that gold can be graded. Duplicates are checked once."""
        unique = list(dict.fromkeys(tasks))
        if not unique:
            return []
        results = dict.fromkeys(unique, 0.0)
        self._workers += [None] * (self.num_workers - len(self._workers))
        pending = deque(unique)
        busy: dict[int, tuple[tuple, float]] = {}  # worker slot -> (task, start time)
        deadline = time.monotonic() + self.batch_timeout
        while pending or busy:
            for slot in range(len(self._workers)):
                if slot not in busy and pending:
                    if self._workers[slot] is None:  # started lazily, before the item's clock starts
                        self._workers[slot] = self._new_worker()
                    task = pending.popleft()
                    self._workers[slot].send(task)
                    busy[slot] = (task, time.monotonic())
            now = time.monotonic()
            if now >= deadline:
                self._give_up(list(busy), len(pending), "the batch deadline")
                break
            next_expiry = min(start + self.item_timeout for _, start in busy.values())
            ready, _, _ = select.select([self._workers[s] for s in busy], [], [], max(0.0, min(deadline, next_expiry) - now))
            for slot in [s for s in busy if self._workers[s] in ready]:
                task, _ = busy.pop(slot)
                try:
                    results[task] = self._workers[slot].recv()
                except (EOFError, OSError, ValueError):  # the worker died (memory limit, signal): score 0
                    self._kill(slot)
            now = time.monotonic()
            expired = [s for s, (_, start) in busy.items() if now - start >= self.item_timeout]
            if expired:
                self._give_up(expired, 0, "the per-item time box")
                for slot in expired:
                    del busy[slot]
        return [results[t] for t in tasks]

    def _give_up(self, slots: list[int], unsent: int, why: str) -> None:
        for slot in slots:
            self._kill(slot)
        self.timeouts += len(slots) + unsent
        log.warning("answer check: %d item(s) scored 0 after %s", len(slots) + unsent, why)

    def _kill(self, slot: int) -> None:
        self._workers[slot].kill()
        self._workers[slot] = None

    def close(self) -> None:
        for worker in filter(None, self._workers):
            worker.kill()
        self._workers = []

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_workers"] = []  # processes do not travel; a copy starts its own
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 — interpreter shutdown
            pass
