"""benchmarks/flop_floor.py's arithmetic, worked out by hand: the FLOP counts behind the step's floor (no timing)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from helpers import load_tool

ff = load_tool("flop_floor", "benchmarks")

# hidden 4, intermediate 8, 2 layers, 2 heads of 2 dims (q: 4 -> 4), 1 kv head (k, v: 4 -> 2), vocab 10
TINY = ff.ModelShape(hidden=4, intermediate=8, layers=2, heads=2, kv_heads=1, head_dim=2, vocab=10)


def test_block_params_group_equal_shapes():
    """Guards the shapes timed: q and o (4x4), k and v (4x2), gate and up (4x8), down (8x4); 144 weights a block."""
    assert TINY.linears() == {"q/o": (4, 4, 2), "k/v": (4, 2, 2), "gate/up": (4, 8, 2), "down": (8, 4, 1)}
    assert TINY.block_params() == 16 + 8 + 8 + 16 + 32 + 32 + 32 == 144
    assert TINY.matmul_params() == 2 * 144 + 4 * 10 == 328  # the LM head read once, tied or not


def test_forward_flops_by_hand():
    """One sequence of 3 tokens, logits for 2: linears 2·144·2 layers·3 = 1728; attention Σctx = 1+2+3 = 6, so
    4 (QKᵀ + AV, 2 FLOPs each) · 2 layers · 4 (heads·dim) · 6 = 192; LM head 2·4·10·2 = 160. Total 2080."""
    assert ff.linear_flops(TINY, 3) == 1728
    assert ff.causal_context_sum(3) == 6
    assert ff.attention_flops(TINY, 6) == 192
    assert ff.lm_head_flops(TINY, 2) == 160
    assert ff.forward_flops(TINY, 1, 3, 2) == 2080
    assert ff.forward_flops(TINY, 5, 3, 2) == 5 * 2080


def test_decode_flops_by_hand():
    """2 passes after a 3-token prompt: pass 1 attends 4 positions, pass 2 five: Σctx = 9. Per sequence: linears
    2·144·2·2 = 1152, attention 4·2·4·9 = 288, LM head 2·4·10·2 = 160: 1600; two sequences 3200."""
    assert ff.decode_flops(TINY, 2, 3, 2) == 2 * (1152 + 288 + 160) == 3200
    assert ff.decode_flops(TINY, 2, 3, 0) == 0


def test_shared_forward_flops_by_hand():
    """One group, P=3, G=2, C=2: the prompt once and both completions, 3 + 2·2 = 7 tokens through the linears
    (2·144·2·7 = 4032); attention Σctx = 6 (the prompt, 1+2+3) + 2·(2·3 + 1+2) (each completion token sees the 3
    prompt tokens and its own up to itself) = 24, so 4·2·4·24 = 768; LM head on 4 tokens 2·4·10·4 = 320. Total 5120,
    against the unshared 2 sequences of 5 tokens: 2·(2880 + 480 + 160) = 7040."""
    assert ff.shared_forward_flops(TINY, 1, 2, 3, 2) == 4032 + 768 + 320 == 5120
    assert ff.forward_flops(TINY, 2, 5, 2) == 2 * (2880 + 480 + 160) == 7040
    assert ff.shared_forward_flops(TINY, 3, 2, 3, 2) == 3 * 5120
    # a group of one has nothing to share: the same count as its own sequence
    assert ff.shared_forward_flops(TINY, 3, 1, 5, 4) == ff.forward_flops(TINY, 3, 9, 4)


def test_training_tokens_by_layout():
    """The embedded default of issue 23's count: prompt 78 tokens, completions 22, G = 8: 78 + 8·22 = 254 tokens
    carry distinct work where the unshared layout feeds 8·100 = 800; logits for 8·22 = 176 in both."""
    assert ff.training_tokens(1, 8, 78, 22) == {"shared": (254, 176), "unshared": (800, 176)}
    assert ff.training_tokens(4, 4, 90, 45) == {"shared": (4 * 90 + 16 * 45, 720), "unshared": (16 * 135, 720)}


def test_step_flops_stages():
    """B=2 prompts × G=2, P=3, C=2, 3 decode steps (2 passes after the prefill). Unshared forward over 4 sequences
    of 5 tokens with 2 logits each: 4·(2·144·2·5 + 4·2·4·15 + 2·4·10·2) = 4·(2880 + 480 + 160) = 14080; shared:
    2 groups of 5120 (test above) = 10240. Prefill: 2 prompts of 3 tokens, 1 logit: 2·(1728 + 192 + 80) = 4000.
    Decode: 4 sequences, 2 passes: 6400."""
    shared = ff.step_flops(TINY, prompts=2, generations=2, prompt_tokens=3, completion_tokens=2, decode_steps=3)
    assert shared["policy forward + backward"] == 3 * 10240
    assert shared["reference forward"] == 10240
    assert shared["total"] == 3 * 10240 + 10240 + 4000 + 6400 == 51360
    stages = ff.step_flops(TINY, prompts=2, generations=2, prompt_tokens=3, completion_tokens=2, decode_steps=3,
                           shared_prompt=False)
    assert stages["policy forward + backward"] == 3 * 14080
    assert stages["reference forward"] == 14080
    assert stages["prefill (distinct prompts)"] == 4000
    assert stages["decode"] == 6400
    assert stages["total"] == 3 * 14080 + 14080 + 4000 + 6400
    assert ff.decode_weight_bytes(TINY, 3, 2) == 2 * 328 * 2



def test_floor_counts_decode_arithmetic_or_weight_reads_whichever_is_longer():
    """The stages of the test above (51360 FLOPs, 6400 of them decode) at 1000 FLOP/s: 44.96 s outside decode,
    6.4 s of decode arithmetic. Weight reads of 2 s hide under it (51.36 s, not 53.36); reads of 10 s replace it:
    44.96 + 10 = 54.96 s."""
    stages = ff.step_flops(TINY, prompts=2, generations=2, prompt_tokens=3, completion_tokens=2, decode_steps=3)
    assert ff.floor_seconds(stages, 1000.0, 2.0) == pytest.approx(51.36)
    assert ff.floor_seconds(stages, 1000.0, 10.0) == pytest.approx(54.96)
    assert ff.floor_seconds(stages, 1000.0, 6.4) == pytest.approx(51.36)

def test_smollm2_shapes_from_config():
    """SmolLM2-135M's config (hidden 576, intermediate 1536, 30 layers, 9 heads / 3 kv heads of 64, vocab 49152):
    3,538,944 weights a block (q, o 576²; k, v 576·192; gate, up, down 576·1536), 134.5M with the LM head, and
    212.3 MFLOP of linears + 56.6 MFLOP of LM head per token."""
    config = SimpleNamespace(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                             num_key_value_heads=3, head_dim=64, vocab_size=49152)
    shape = ff.ModelShape.from_config(config)
    assert shape.block_params() == 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536 == 3_538_944
    assert shape.matmul_params() == 30 * 3_538_944 + 576 * 49152 == 134_479_872
    assert ff.linear_flops(shape, 1) == 212_336_640
    assert ff.lm_head_flops(shape, 1) == 56_623_104
    # the workload with 108-token prompts and full 64-token completions: ≈ 2.0 TFLOP policy fwd + bwd
    stages = ff.step_flops(shape, 4, 4, 108, 64, 64, shared_prompt=False)
    assert stages["policy forward + backward"] / 1e12 == pytest.approx(1.97, abs=0.01)
    assert stages["reference forward"] / 1e12 == pytest.approx(0.659, abs=0.001)
    # each prompt once: 4·108 + 16·64 = 1456 tokens × 212.3 MFLOP = 309.2 GFLOP of linears; attention
    # 4·30·9·64 = 69,120 FLOP per attended position × 4·(108·109/2 + 4·(64·108 + 64·65/2)) = 167,416 positions
    # = 11.6 GFLOP; LM head 1024 × 56.6 MFLOP = 58.0 GFLOP: a forward of 378.7 GFLOP, 1.136 TFLOP fwd + bwd
    shared = ff.step_flops(shape, 4, 4, 108, 64, 64)
    assert shared["reference forward"] / 1e9 == pytest.approx(309.162 + 11.572 + 57.982, abs=0.01)
    assert shared["policy forward + backward"] / 1e12 == pytest.approx(1.136, abs=0.001)


def test_head_dim_defaults_to_hidden_over_heads():
    config = SimpleNamespace(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                             vocab_size=100)
    shape = ff.ModelShape.from_config(config)
    assert (shape.head_dim, shape.kv_heads) == (16, 4)


def test_recomputed_reads_a_stored_result_with_the_overlapping_decode():
    """A result stored with the stages above at 1 GFLOP/s and 10 µs of decode weight reads, its floor written as
    the sum (44.96 + 6.4 + 10 = 61.36 µs): recomputed, the reads replace decode's 6.4 µs of arithmetic, 54.96 µs;
    a 109.92 µs step is 2× that; a step named fp32 has no bf16 ratio."""
    stages = ff.step_flops(TINY, prompts=2, generations=2, prompt_tokens=3, completion_tokens=2, decode_steps=3)
    result = {"gflops": {"bf16": {"shared": 1.0, "unshared": 1.0}},
              "stage_tflop": {"shared": {k: v / 1e12 for k, v in stages.items()}},
              "decode_weight_reads_s": {"bf16": 10e-6},
              "floor_s": {"shared": {"bf16": 61.36e-6}},
              "measured": {"r1lit-fast": {"seconds": 109.92e-6}, "r1lit-fp32": {"seconds": 1.0}}}
    again = ff.recomputed(result)
    assert again["floor_s"]["shared"] == pytest.approx(54.96e-6)
    assert again["stored_floor_s"] == 61.36e-6
    assert again["x_floor"] == {"r1lit-fast": pytest.approx(2.0)}


def test_recompute_names_each_bad_file_and_goes_on(tmp_path):
    """A file that is missing, not JSON, another benchmark's or a result without the floor's inputs gets one line
    naming it and its problem; the good file after them is still read; the exit code says something failed."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    good = sorted((root / "benchmarks" / "results").glob("*flop_floor*.json"))[0]
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "other.json").write_text(json.dumps({"benchmark": "bench_vs_trl", "result": {}}))
    (tmp_path / "partial.json").write_text(json.dumps({"benchmark": "flop_floor", "result": {"gflops": {}}}))
    files = [tmp_path / "missing.json", tmp_path / "empty.json", tmp_path / "other.json", tmp_path / "partial.json", good]
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "flop_floor.py"), "--recompute", *map(str, files)],
                          capture_output=True, text=True, timeout=60, cwd=root)
    assert done.returncode == 2
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 4 and "Traceback" not in done.stderr
    assert "missing.json: cannot read it" in errors[0]
    assert "empty.json: not a JSON file" in errors[1]
    assert "other.json: not a flop_floor result file (its benchmark: 'bench_vs_trl')" in errors[2]
    assert "partial.json: its result lacks what the floor needs" in errors[3]
    assert good.name in done.stdout


def test_recompute_refuses_timing_options():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "flop_floor.py"), "--recompute", "x.json",
                           "--step-seconds", "r1lit=4"], capture_output=True, text=True, timeout=60, cwd=root)
    assert done.returncode == 2 and "--recompute times nothing" in done.stderr
