"""Every rank learns whether every engine did its part, at the points where all ranks meet anyway.

A rank whose engine fails (a dead vLLM server on its node, a push that did not arrive) raises. Without this, the
other ranks would go on to their next collective (a gradient all-reduce, a barrier) and wait there for a peer that
never comes. So after each generation round (``RolloutProducer``) and after each weight push (``VLLMEngineCallback``)
every rank calls ``agree`` once: one small all-gather of (engine, seconds, error). When any rank failed, every rank
raises: the failed one its own error, the others an ``EngineError`` that names the failed engine and carries its
message (where it logs and how its log ends). A failing rank reaches ``agree`` within its own deadline (the engine's
``request_timeout``), so no rank waits without one. On one process it is an identity.
"""

from __future__ import annotations

from r1lit.errors import EngineError, R1LitError
from r1lit.rollout.engine import RolloutEngine
from r1lit.training.distributed import gather_objects


def agree(engine: RolloutEngine, failure: R1LitError | None, doing: str, seconds: float = 0.0) -> list[tuple[int, float]]:
    """Every rank calls this at the same point with its own outcome (``failure`` None when its part went well) and
    a number to share (``seconds``: its generation time so far this step). Returns every rank's
    ``(engine index, seconds)`` in rank order; raises on every rank when any rank failed."""
    rows = gather_objects((engine.engine_index, float(seconds), None if failure is None else str(failure)))
    if failure is not None:
        raise failure
    for rank, (index, _, error) in enumerate(rows):
        if error is not None:
            raise EngineError(f"{engine.describe(index)} failed on rank {rank} while {doing}, so every rank stops. "
                              f"Rank {rank} reported:\n{error}")
    return [(index, value) for index, value, _ in rows]


def max_per_engine(rows: list[tuple[int, float]]) -> dict[int, float]:
    """The largest value per engine from each rank's ``(engine index, value)`` (``agree``'s result): an engine's
    generation time is that of its slowest rank."""
    most: dict[int, float] = {}
    for index, value in rows:
        most[index] = max(most.get(index, value), value)
    return dict(sorted(most.items()))
