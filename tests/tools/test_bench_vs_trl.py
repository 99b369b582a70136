"""benchmarks/bench_vs_trl.py reads r1lit's logged step the way TRL's clock sees a step: the weight push included."""

from __future__ import annotations

import pytest

from helpers import load_tool

bench = load_tool("bench_vs_trl", "benchmarks")


def test_r1lit_step_includes_the_vllm_weight_push(tmp_path):
    """Two logged steps with the vLLM engine's push (0.25 s, 0.5 s) and one without (the HF engine has none):
    the step is training_step's time plus the push; the other columns are read as logged."""
    run = tmp_path / "version_0"
    run.mkdir()
    (run / "metrics.csv").write_text(
        "step,step_time,time/generate,time/optimise,time/score,time/weight_push,completions/mean_length,"
        "completions/max_length\n"
        "0,10.0,3.0,6.5,0.5,0.25,50,64\n"
        "1,8.0,2.0,5.5,0.5,0.5,40,60\n"
        "2,7.0,2.0,4.5,0.5,,30,50\n")
    logged = bench.r1lit_results(tmp_path)
    assert logged["step_time"] == pytest.approx([10.25, 8.5, 7.0])
    assert logged["time/weight_push"] == [0.25, 0.5]
    assert logged["time/optimise"] == [6.5, 5.5, 4.5]
    assert logged["completions/mean_length"] == [50.0, 40.0, 30.0]


def test_r1lit_config_lists_keep_freed_host_memory_unless_glibc_default(tmp_path):
    """The runs of docs/benchmarks.md list the opt-in callback; ``--glibc-default`` leaves it out."""
    w = bench.Workload()
    kept = bench.r1lit_config(w, tmp_path / "problems.jsonl", tmp_path / "logs")
    default = bench.r1lit_config(w, tmp_path / "problems.jsonl", tmp_path / "logs", keep_host_memory=False)
    assert kept["trainer"]["callbacks"] == [{"class_path": "KeepFreedHostMemory"}]
    assert default["trainer"]["callbacks"] == []
