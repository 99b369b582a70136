"""The step's generation time per engine: each engine's slowest rank, logged only when there are several engines."""

from __future__ import annotations

from r1lit.producer.rollout_producer import StageTimes
from r1lit.rollout.agreement import max_per_engine


def test_an_engines_generation_time_is_its_slowest_ranks():
    rows = [(0, 3.0), (0, 5.5), (1, 9.0), (1, 2.0)]
    assert max_per_engine(rows) == {0: 5.5, 1: 9.0}
    times = StageTimes(generate=3.0, score=1.0, per_engine=max_per_engine(rows))
    assert times.metrics() == {"time/generate": 3.0, "time/score": 1.0,
                               "time/generate/engine_0": 5.5, "time/generate/engine_1": 9.0}
    assert StageTimes(generate=2.0, per_engine={0: 2.5}).metrics() == {"time/generate": 2.0, "time/score": 0.0}
