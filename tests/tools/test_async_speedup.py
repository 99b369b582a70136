"""benchmarks/async_speedup.py's timing model, worked out by hand."""

from __future__ import annotations

import pytest

from helpers import load_tool

model = load_tool("async_speedup", "benchmarks")


def test_generation_bound_step():
    """g 10, s 1, t 5, p 1: synchronous 17 s; one-step-off max(10, 6) + 1 = 11 s; x17/11; trainers idle 4 s."""
    parts = model.StepParts(generate=10, score=1, optimise=5, push=1)
    assert parts.synchronous() == 17 and parts.one_step_off() == 11
    assert parts.speedup() == pytest.approx(17 / 11)
    assert "idles the training ranks 4.00 s" in model.report(parts)


def test_training_bound_step_and_the_best_case():
    """g 6, s 0, t 6, p 0: 12 s becomes 6 s, the 2x ceiling of overlapping two equal halves."""
    parts = model.StepParts(generate=6, score=0, optimise=6)
    assert parts.speedup() == pytest.approx(2.0)
    assert "idles the generation engine 1.00 s" in model.report(model.StepParts(generate=6, score=0, optimise=7))


def test_reads_the_medians_of_a_run(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for step, (g, t) in enumerate([(100, 100), (4, 2), (6, 3), (5, 4)]):  # step 0 (start-up) is skipped
        writer.add_scalar("time/generate", g, step)
        writer.add_scalar("time/optimise", t, step)
        writer.add_scalar("time/score", 0.5, step)
    writer.close()
    parts = model.medians_from_run(tmp_path)
    assert (parts.generate, parts.optimise, parts.score, parts.push) == (5, 3, 0.5, 0.0)
    assert model.main(["--generate", "5", "--optimise", "3"]) == 0
