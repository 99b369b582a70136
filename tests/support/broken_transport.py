"""Test-only: the CPU transport with its push broken on purpose — the engine never answers the update round trip, as
in a weight push that hangs forever with no error. The run must stop within the push deadline and say so."""

from __future__ import annotations

import threading

from r1lit.rollout.vllm.transports import GlooTransport


class HangingPushTransport(GlooTransport):
    """``GlooTransport`` whose ``start_weight_update`` request never returns."""

    def _trainer_init(self, info) -> None:
        super()._trainer_init(info)
        never = threading.Event()
        self._engine.client.start_weight_update = lambda: never.wait()
