"""benchmarks/bench_attention_layout.py on small rows: the gathered attention gives the eager one's output on every
token, both are timed, and a layout it cannot build is refused."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_attention_layout import HEAD_DIM, HEADS, KV_HEADS, eager, gathered, layout  # noqa: E402


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_attention_layout.py"), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})


def test_gathered_attention_equals_the_masked_square_in_float32_with_gradients():
    torch.manual_seed(0)
    lay = layout(5, [4, 2, 3], rows=2)
    L = lay["length"]  # 5 + 3 + 1 + 2
    assert L == 11
    q = torch.randn(2, HEADS, L, HEAD_DIM, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(2, KV_HEADS, L, HEAD_DIM, dtype=torch.float64, requires_grad=True) for _ in range(2))
    lay = {name: (t.double() if torch.is_tensor(t) and t.is_floating_point() else t) for name, t in lay.items()}
    reference, other = eager(q, k, v, lay), gathered(q, k, v, lay)
    assert torch.allclose(reference, other, atol=1e-5)  # the softmax runs in float32, as transformers runs it
    weights = torch.randn_like(reference)
    grads = [torch.autograd.grad((f(q, k, v, lay) * weights).sum(), (q, k, v)) for f in (eager, gathered)]
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5)


def test_both_layouts_are_checked_and_timed(tmp_path):
    done = bench("--prompt-tokens", "6", "--completions", "4", "3", "--rows", "2", "--repeats", "1", "--threads", "1",
                 "--eager-mode", "--results", str(tmp_path / "out.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())["result"]
    assert result["row_tokens"] == 6 + 3 + 2 and result["compiled"] is False
    assert set(result["seconds"]) == {"eager", "gathered"}
    assert all(t["fwd_bwd"] > 0 and t["no_grad_fwd"] > 0 for t in result["seconds"].values())
    assert "max |eager − gathered|" in done.stdout


def test_a_one_token_completion_and_no_repeats_are_refused():
    for bad in (["--completions", "1"], ["--repeats", "0"], ["--threads", "0"]):
        done = bench(*bad)
        assert done.returncode != 0 and "every completion at least 2 tokens" in done.stderr, bad
