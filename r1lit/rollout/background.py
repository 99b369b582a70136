"""Generation in the background, for engines whose weights live outside the trainer (vLLM in its own process).

One-step-off GRPO (``model.async_generation``) asks such an engine for the next step's rollout and trains the
current step meanwhile. The engine keeps the rule that makes this correct: a weight push waits until every
generation already asked for has finished, so each rollout comes from one set of weights (the set that was loaded
when it was asked for). Engines that generate with the policy's own parameters (``HFEngine``) cannot do this.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from r1lit.rollout.types import Rollout, SamplingConfig


class BackgroundGeneration:
    """Mixin for a ``RolloutEngine``: ``submit`` runs ``generate`` on a background thread; ``wait_idle`` returns
    once nothing submitted is still running (the engine's ``load_weights`` calls it first)."""

    _executor: ThreadPoolExecutor | None = None
    _pending: list[Future] | None = None

    def submit(self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, seed: int | None = None) -> Future:
        """Start ``generate`` with the weights loaded now; the future's result is its ``Rollout``."""
        if self._executor is None:
            self._executor, self._pending = ThreadPoolExecutor(1, thread_name_prefix="r1lit-generate"), []
            self._lock = threading.Lock()
        future = self._executor.submit(self.generate, prompt_ids, n, sampling, seed)  # type: ignore[attr-defined]
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()] + [future]
        return future

    def wait_idle(self) -> None:
        """Block until every submitted generation has finished (its errors stay with its future)."""
        if not self._pending:
            return
        with self._lock:
            pending, self._pending = list(self._pending), []
        for future in pending:
            try:
                future.result()
            except Exception:  # noqa: BLE001 - the caller of the future's result sees it
                pass

    def stop_background(self) -> None:
        """Drop what has not started and let the worker thread go (at close)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor, self._pending = None, None


def finished(rollout: Rollout) -> Future:
    """A future that already holds ``rollout`` (a rollout generated in the foreground, or restored)."""
    future: Future = Future()
    future.set_result(rollout)
    return future
