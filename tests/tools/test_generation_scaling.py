"""benchmarks/generation_scaling.py's timing model of K reserved GPUs per node, worked out by hand."""

from __future__ import annotations

import pytest

from helpers import load_tool

model = load_tool("generation_scaling", "benchmarks")

SMALL = model.Workload(prompts_per_rank=2, generations=4, prompt_tokens=100, completion_tokens=400)  # 8 per rank
RATES = model.Rates(decode_tokens_per_s=1000, train_tokens_per_s=1000, tp_efficiency=0.8, score_s=0.1, push_s=0.5)


def test_tensor_parallel_gains_sub_linearly():
    """tp × 0.8 ** log2(tp): 1 → 1, 2 → 2 × 0.8 = 1.6, 4 → 4 × 0.64 = 2.56."""
    assert model.replica_speedup(1, 0.8) == 1
    assert model.replica_speedup(2, 0.8) == pytest.approx(1.6)
    assert model.replica_speedup(4, 0.8) == pytest.approx(2.56)


def test_rates_from_peaks():
    """Training: 0.5 × 1e15 FLOP/s ÷ (10 × 1e9 FLOPs per token) = 50,000 tokens/s. Decode: a step of 100 sequences
    reads 2e9 B of weights + 100 × 1000 × 1000 B of KV = 2.1e9 B; 0.5 × 1e12 B/s ÷ 2.1e9 B × 100 = 23,809.5."""
    assert model.training_rate_from_mfu(1e9, 1e15, 0.5) == pytest.approx(50_000)
    assert model.decode_rate_from_bandwidth(1e9, 1000, 100, 1000, 1e12, 0.5) == pytest.approx(23_809.52, rel=1e-6)
    # the defaults: 0.3 × 989e12 ÷ 1.54e10 = 19,266; 0.3 × 3.35e12 ÷ (3.08e9 + 256 × 768 × 28,672) × 256 = 29,514
    assert model.DEFAULT_TRAIN_RATE == pytest.approx(19_266, rel=1e-3)
    assert model.DEFAULT_DECODE_RATE == pytest.approx(29_514, rel=1e-3)


def test_an_engine_per_node_generates_its_nodes_completions():
    """2 nodes × 8 GPUs, K = dp 2: 6 ranks per node, each 8 completions of 400 tokens = 19,200 tokens for the node's
    engine at 2 × 1000 tokens/s = 9.6 s; a rank trains 8 × (100 + 400) = 4,000 tokens at 1000/s = 4 s.
    Synchronous 9.6 + 0.1 + 4 + 0.5 = 14.2 s; one-step-off max(9.6, 4.1) + 0.5 = 10.1 s."""
    layout = model.Layout(nodes=2, gpus_per_node=8, data_parallel=2)
    assert (layout.reserved, layout.ranks_per_node, layout.ranks, layout.ranks_per_engine) == (2, 6, 12, 6)
    parts = model.step_parts(layout, SMALL, RATES)
    assert parts.generate == pytest.approx(9.6) and parts.optimise == pytest.approx(4.0)
    assert parts.synchronous() == pytest.approx(14.2) and parts.one_step_off() == pytest.approx(10.1)
    assert model.completions_per_second(layout, SMALL, parts.one_step_off()) == pytest.approx(12 * 8 / 10.1)


def test_one_engine_for_the_job_generates_every_ranks_completions():
    """engine_per_node false: node 0's engine decodes both nodes' 12 × 8 × 400 = 38,400 tokens: 19.2 s."""
    layout = model.Layout(nodes=2, gpus_per_node=8, data_parallel=2, engine_per_node=False)
    assert layout.ranks_per_engine == 12
    assert model.step_parts(layout, SMALL, RATES).generate == pytest.approx(19.2)


def test_tensor_parallel_replica_and_too_large_k():
    """tp 2 on one node: 6 ranks × 8 × 400 = 19,200 tokens at 1000 × 1.6 = 1,600 tokens/s = 12 s."""
    parts = model.step_parts(model.Layout(nodes=1, tensor_parallel=2), SMALL, RATES)
    assert parts.generate == pytest.approx(12.0)
    with pytest.raises(ValueError, match="leaves no training GPU of 4"):
        model.step_parts(model.Layout(nodes=1, gpus_per_node=4, data_parallel=4), SMALL, RATES)


def test_rates_from_a_runs_medians():
    """An engine on 2 GPUs served 3 ranks × 8 completions × 300 tokens = 7,200 tokens in 10 s: 360 tokens/s per GPU;
    a rank trained 8 × (100 + 300) = 3,200 tokens in 4 s: 800 tokens/s."""
    parts = model.StepParts(generate=10, score=0.5, optimise=4, push=0.2)
    rates = model.rates_from_run(parts, mean_completion=300, workload=SMALL, ranks_per_engine=3, engine_gpus=2)
    assert rates.decode_tokens_per_s == pytest.approx(360) and rates.train_tokens_per_s == pytest.approx(800)
    assert (rates.score_s, rates.push_s) == (0.5, 0.2)


def test_the_table_and_the_command(capsys, tmp_path):
    text = model.table([1, 2], [1, 3, 8], SMALL, RATES)
    # 1 node, K = 3: 5 ranks × 8 = 40 completions; 5 × 8 × 400 / 3000 = 5.33 s; one-step-off 5.33 + 0.5 = 5.83 s
    assert "| 1 | 3 (3 × 1) | 5 | 40 | 5.3 | 4.0 | 9.9 | 5.8 | 7 | 7 |" in text
    assert "| 8 (" not in text  # K = 8 leaves no training GPU: no row
    assert model.main(["--nodes", "1", "--k", "1", "2", "--decode-rate", "20000", "--train-rate", "15000"]) == 0
    assert "rates (given): decode 20,000" in capsys.readouterr().out

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for step, (g, t, length) in enumerate([(100, 100, 9), (10, 4, 300), (12, 5, 300), (8, 3, 300)]):  # step 0 skipped
        for tag, value in (("time/generate", g), ("time/optimise", t), ("time/score", 0.5),
                           ("completions/mean_length", length)):
            writer.add_scalar(tag, value, step)
    writer.close()
    assert model.main(["--from-run", str(tmp_path), "--prompts-per-rank", "2", "--generations", "4",
                       "--prompt-tokens", "100", "--run-ranks-per-engine", "3", "--run-engine-gpus", "2",
                       "--nodes", "1", "--k", "1"]) == 0
    out = capsys.readouterr().out  # medians: generate 10 s, optimise 4 s: the rates of the test above
    assert "measured in" in out and "decode 360 tokens/s" in out and "training 800 tokens/s" in out

    ahead = tmp_path / "ahead"
    writer = SummaryWriter(str(ahead))
    for step in range(3):
        for tag, value in (("time/generate", 1), ("time/optimise", 4), ("time/score", 0.5),
                           ("completions/mean_length", 300), ("rollout/staleness", min(step, 1))):
            writer.add_scalar(tag, value, step)
    writer.close()
    with pytest.raises(SystemExit, match="Give a synchronous run"):
        model.main(["--from-run", str(ahead)])
