"""benchmarks/bench_lm_head.py on a tiny head: every route agrees with the module route and is timed at every chunk
size, and a size below one is refused."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--tokens", "20", "--hidden", "8", "--vocab", "50", "--chunk-tokens", "3", "32", "--repeats", "1",
         "--threads", "1"]


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_lm_head.py"), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("extra", [[], ["--bf16"]])
def test_every_route_is_checked_and_timed(tmp_path, extra):
    done = bench(*SMALL, *extra, "--results", str(tmp_path / "out.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())["result"]
    assert set(result["seconds"]) == {"3", "32"}
    for routes in result["seconds"].values():
        assert set(routes) == {"module", "one_node", "one_node_compiled"}
        assert all(t["policy_fwd_bwd"] > 0 and t["reference_fwd"] > 0 for t in routes.values())
    # fp32: the same log-probs on every route; under bf16 autocast the same bf16 logits feed the same math
    assert result["max_logprob_gap"] < 1e-5
    assert "one_node_compiled" in done.stdout and "max |route − module| log-prob" in done.stdout


def test_a_size_below_one_is_refused():
    done = bench("--tokens", "0")
    assert done.returncode != 0 and "must be at least 1" in done.stderr
